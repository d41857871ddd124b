"""Question 2: what a no-sync loop, the mean and the median report on one device."""
import math

import pytest
from grader.suites._answers import answers, number

KERNEL_S, LAUNCH_S, OUTLIER_S = 4e-3, 20e-6, 80e-3
KEYS = {"no_sync_ms", "mean_ms", "median_ms"}


def _answers(student):
    return answers(student, "question_2", KEYS)


@pytest.mark.points(0.5)
def test_no_sync(student):
    """(a) without synchronisation the loop measures the launch, 0.02 ms"""
    got = number(_answers(student)["no_sync_ms"], "no_sync_ms")
    assert math.isclose(got, LAUNCH_S * 1e3, rel_tol=0.01), (
        f"got {got:.4g} ms: after warm-up the host only pays the launch when it never waits")


@pytest.mark.points(1)
def test_mean(student):
    """(b) the mean carries a tenth of the outlier"""
    got = number(_answers(student)["mean_ms"], "mean_ms")
    want = (KERNEL_S + LAUNCH_S + OUTLIER_S / 10) * 1e3
    assert math.isclose(got, want, rel_tol=0.01), (
        f"got {got:.4g} ms: each call is launch + kernel; one of the 10 adds the outlier")


@pytest.mark.points(0.5)
def test_median(student):
    """(c) the median ignores the outlier"""
    got = number(_answers(student)["median_ms"], "median_ms")
    assert math.isclose(got, (KERNEL_S + LAUNCH_S) * 1e3, rel_tol=0.01), f"got {got:.4g} ms"
