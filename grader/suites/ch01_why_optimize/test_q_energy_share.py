"""Question 2: what a 50,000x gain in energy efficiency alone does to the cost of a token."""
import math

import pytest
from grader.suites._answers import answers, number

ENERGY_SHARE, GAIN = 0.10, 50_000
COST_FALL = 1 / ((1 - ENERGY_SHARE) + ENERGY_SHARE / GAIN)
SHARE_FOR_10X = (1 - 1 / 10) / (1 - 1 / GAIN)
KEYS = {"cost_fall_factor", "energy_share_for_10x"}


def _answers(student):
    return answers(student, "question_2", KEYS)


@pytest.mark.points(1)
def test_cost_falls_by_amdahls_factor(student):
    """(a) the cost of a token falls by Amdahl's factor, within 1 %"""
    got = number(_answers(student)["cost_fall_factor"], "cost_fall_factor")
    assert math.isclose(got, COST_FALL, rel_tol=0.01), (
        f"got {got:.6g}: only a tenth of the cost gets 50,000x cheaper; the other nine tenths stay "
        "(Amdahl's law, pitfall 3)")


@pytest.mark.points(1)
def test_share_needed_for_ten_times(student):
    """(b) the share of electricity in the cost that a 10x fall would need, as a fraction, within 1 %"""
    got = number(_answers(student)["energy_share_for_10x"], "energy_share_for_10x")
    assert 0 < got <= 1, f"give the share as a fraction in (0, 1], got {got!r}"
    assert math.isclose(got, SHARE_FOR_10X, rel_tol=0.01), (
        f"got {got:.6g}: solve 1 / ((1 - e) + e / 50000) = 10 for e")
