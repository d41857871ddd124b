"""Question 3: what a 100x ROI takes: the smallest bill, and the speed-up on a given bill."""
import math

import pytest
from grader.suites._answers import answers, number

ROI, COST, HORIZON, BILL = 100, 50_000, 12, 600_000
NEEDED_SAVINGS = (ROI + 1) * COST / HORIZON  # per month
SPEEDUP = 1 / (1 - NEEDED_SAVINGS / BILL)
KEYS = {"min_monthly_bill_usd", "speedup_needed"}


def _answers(student):
    return answers(student, "question_3", KEYS)


@pytest.mark.points(1)
def test_smallest_bill(student):
    """(a) the smallest monthly bill for which any speed-up reaches ROI = 100, within 0.5 %"""
    got = number(_answers(student)["min_monthly_bill_usd"], "min_monthly_bill_usd")
    assert math.isclose(got, NEEDED_SAVINGS, rel_tol=0.005), (
        f"got {got:,.0f} USD: savings can reach the whole bill at most, and ROI is net of the "
        "engineering cost, so H x B - E must reach 100 x E")


@pytest.mark.points(1)
def test_speedup_on_the_given_bill(student):
    """(b) the speed-up that reaches ROI = 100 on a 600,000 USD monthly bill, within 0.5 %"""
    got = number(_answers(student)["speedup_needed"], "speedup_needed")
    assert math.isclose(got, SPEEDUP, rel_tol=0.005), (
        f"got {got:.5g}: solve 12 x B x (1 - 1/s) - E = 100 x E for s")
