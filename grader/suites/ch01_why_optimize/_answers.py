"""What the question suites share: read a question's answers and check each is a number."""
import math


def answers(student, question: str, keys: set[str]) -> dict:
    """The dict `question()` returns, with exactly `keys`."""
    got = getattr(student, question)()
    assert isinstance(got, dict) and set(got) == keys, (
        f"{question}() must return a dict with the keys {sorted(keys)}, got {got!r:.200}")
    return got


def number(answers: dict, key: str) -> float:
    value = answers[key]
    assert isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), (
        f"{key!r} must be a finite number, got {value!r:.100}")
    return float(value)
