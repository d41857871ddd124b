"""Exercise 3: the cost model, against the judge's own formulas on hidden values."""
import random

import pytest

from grader.suites._answers import number


def tau(a: float, g: int) -> float:
    return float(g + 1) if a == 1 else (1 - a ** (g + 1)) / (1 - a)


def speedup(a, g, c, v):
    return tau(a, g) / (g * c + v)


@pytest.mark.points(1)
def test_expected_tokens_per_cycle(student):
    """tau(a, g) = (1 - a^(g+1)) / (1 - a), with a = 0 and a = 1 at the ends"""
    for a, g in ((0.0, 3), (0.37, 1), (0.6, 5), (0.93, 8), (1.0, 6), (0.5, 12)):
        got = number(student.expected_tokens_per_cycle(a, g), f"expected_tokens_per_cycle({a}, {g})")
        assert abs(got - tau(a, g)) <= 1e-9 * tau(a, g), (
            f"expected_tokens_per_cycle({a}, {g}) = {got:.6g}, expected {tau(a, g):.6g}: a cycle yields k + 1 "
            f"tokens when the first k of g drafts are accepted (the bonus token counts)")


@pytest.mark.points(1)
def test_expected_speedup(student):
    """S = tau / (g c + v)"""
    for a, g, c, v in ((0.8, 4, 0.05, 1.0), (0.55, 3, 0.3, 1.6), (0.9, 7, 0.02, 2.4)):
        got = number(student.expected_speedup(a, g, c, v), "expected_speedup")
        assert abs(got - speedup(a, g, c, v)) <= 1e-9, (
            f"expected_speedup({a}, {g}, {c}, {v}) = {got:.6g}, expected {speedup(a, g, c, v):.6g}")


@pytest.mark.points(2)
def test_best_gamma(student):
    """the draft length with the highest predicted speed-up, for hidden measured costs"""
    cases = [(0.75, 0.04, [0.0, 1.0, 1.0, 1.02, 1.05, 1.1, 1.2, 1.4, 1.7, 2.1, 2.6]),
             (0.6, 0.25, [0.0, 1.0, 1.55, 1.6, 1.7, 1.75, 1.8, 1.9]),
             (0.95, 0.1, [0.0, 1.0] + [1.0] * 10),
             (0.3, 0.3, [0.0, 1.0, 1.8, 1.9, 2.0])]
    for a, c, costs in cases:
        gammas = range(1, len(costs) - 1)
        want = max(gammas, key=lambda g: (speedup(a, g, c, costs[g + 1]), -g))
        got = student.best_gamma(a, c, costs)
        assert got == want, (f"best_gamma(a = {a}, c = {c}, costs {costs}) = {got!r:.20}, expected {want}: "
                             f"g from 1 to len(costs) - 2, verifying g + 1 tokens costs costs[g + 1]")


@pytest.mark.points(2)
def test_fit_acceptance(student):
    """maximum likelihood from per-cycle counts: acceptances / (acceptances + rejections)"""
    rng = random.Random(830)
    for a, g, cycles in ((0.7, 4, 300), (0.9, 3, 200), (0.4, 6, 150)):
        counts = []
        for _ in range(cycles):
            k = 0
            while k < g and rng.random() < a:
                k += 1
            counts.append(k)
        want = sum(counts) / (sum(counts) + sum(1 for k in counts if k < g))
        got = number(student.fit_acceptance(counts, g), "fit_acceptance")
        assert abs(got - want) <= 1e-9, (
            f"fit_acceptance on {cycles} cycles of g = {g}: {got:.5f}, expected {want:.5f} (true a = {a}): a "
            f"cycle that accepted all g drafts saw no rejection; count acceptances and rejections")
