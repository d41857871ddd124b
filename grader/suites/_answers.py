"""What every chapter's question suites share: a student's answer is a plain finite number
(a bool, a NaN, an infinity, a tensor or a string is refused with a message that says so)."""
import math


def number(value, name: str) -> float:
    """`value` as a float, or a failed assertion naming `name`."""
    assert type(value) in (int, float) and math.isfinite(value), (
        f"{name} must be a finite number, got {value!r:.100}")
    return float(value)


def answers(student, question: str, keys: set[str]) -> dict:
    """The dict `question()` returns, with exactly `keys`."""
    got = getattr(student, question)()
    assert isinstance(got, dict) and set(got) == keys, (
        f"{question}() must return a dict with the keys {sorted(keys)}, got {got!r:.200}")
    return got
