"""Question 1: what NVIDIA's "50,000x" measures, and the factor and rate its own rows give."""
import math

import pytest
from grader.suites._answers import answers, number

# The chart's rows (BOND, Trends - Artificial Intelligence, May 2025, page 106):
# year: (inference tokens per year, data-centre power in MW)
ROWS = {2016: (50e9, 37), 2024: (1375e12, 21)}
FACTOR = (ROWS[2024][0] / ROWS[2024][1]) / (ROWS[2016][0] / ROWS[2016][1])
ANNUAL = FACTOR ** (1 / (2024 - 2016))
KEYS = {"measures", "factor", "annual_factor"}


def _answers(student):
    return answers(student, "question_1", KEYS)


@pytest.mark.points(1)
def test_it_measures_energy_efficiency(student):
    """(a) the chart measures tokens per unit of energy, not a price or a speed"""
    answer = _answers(student)["measures"]
    assert isinstance(answer, str) and answer.strip().upper() in "ABCD" and len(answer.strip()) == 1, (
        f"answer (a) with one letter, A to D; got {answer!r}")
    assert answer.strip().upper() == "B", (
        "not that one: read the chart's unit again (tokens per megawatt-year) and what it does not say")


@pytest.mark.points(0.5)
def test_factor_from_the_rows(student):
    """(b) the factor computed from the chart's rows, within 1 %"""
    got = number(_answers(student)["factor"], "factor")
    assert math.isclose(got, FACTOR, rel_tol=0.01), (
        f"got {got:,.0f}: divide tokens per year by megawatts for 2024 and for 2016, then take the ratio "
        "(the chart's rounded label is not what its rows give)")


@pytest.mark.points(0.5)
def test_annual_rate(student):
    """(c) the constant annual factor over the 8 years, within 1 %"""
    got = number(_answers(student)["annual_factor"], "annual_factor")
    assert math.isclose(got, ANNUAL, rel_tol=0.01), (
        f"got {got:.4g}: a factor F reached in n years is F ** (1 / n) a year, with n = 2024 - 2016")
