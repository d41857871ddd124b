"""Question 1: an R550 driver under a CUDA 13.0 build of torch."""
import pytest
from grader.suites._answers import answers, number

KEYS = {"status", "fix", "branch"}


def _answers(student):
    return answers(student, "question_1", KEYS)


@pytest.mark.points(0.5)
def test_status(student):
    """(a) driver 550.54.15 cannot run a CUDA 13.0 runtime: fail"""
    got = _answers(student)["status"]
    assert isinstance(got, str) and got.strip().upper() == "C", (
        f"got {got!r}: CUDA 13 runtimes need the 13.x floor, which 550.54.15 is below")


@pytest.mark.points(1)
def test_fix(student):
    """(b) the driver belongs to the host: upgrade it"""
    got = _answers(student)["fix"]
    assert isinstance(got, str) and got.strip().upper() == "B", (
        f"got {got!r}: a container brings its CUDA runtime, never its driver")


@pytest.mark.points(0.5)
def test_branch(student):
    """(c) the lowest driver branch that runs CUDA 13: 580"""
    got = number(_answers(student)["branch"], "branch")
    assert got == 580, f"got {got:g}: read MINOR_COMPAT_MIN_DRIVER['13'] and take the number before the first dot"
