"""The chapter's questions (思考题): Q1 and Q2 are numbers the judge computes itself, Q3 a
choice."""
import pytest

from grader.suites._answers import number


def speedup(a, g, c, v):
    return (1 - a ** (g + 1)) / (1 - a) / (g * c + v)


@pytest.mark.points(1)
def test_flat_verification_speedup(student):
    """Q1: a = 0.8, g = 6, c = 0.05, v = 1"""
    want = speedup(0.8, 6, 0.05, 1.0)
    got = number(student.q1_flat_verification_speedup(), "q1_flat_verification_speedup()")
    assert abs(got - want) <= 0.01 * want, f"Q1: {got:g} is not right: S = tau(a, g) / (g c + v)"


@pytest.mark.points(2)
def test_break_even_acceptance(student):
    """Q2: the a at which S = 1 for g = 5, c = 0.29, v(6) = 1.7"""
    low, high = 1e-9, 1 - 1e-9
    for _ in range(80):
        middle = (low + high) / 2
        low, high = (middle, high) if speedup(middle, 5, 0.29, 1.7) < 1 else (low, middle)
    got = number(student.q2_break_even_acceptance(), "q2_break_even_acceptance()")
    assert abs(got - low) <= 0.01, (
        f"Q2: {got:g} is not right: solve tau(a, 5) = 5 x 0.29 + 1.7 for a (tau grows with a: bisect)")


@pytest.mark.points(1)
def test_large_batch(student):
    """Q3: why the gain shrinks at batch 64"""
    got = student.q3_large_batch()
    assert got in ("a", "b", "c"), f'Q3: return "a", "b" or "c", got {got!r:.40}'
    assert got == "a", "Q3: not that one: what bounds the target's pass once 64 sequences share it?"
