"""Exercise 7, part 2: choose_method follows the chapter's decision tree on every scenario of
a grid the student has not seen (the judge's own tree, written from the chapter's prose)."""
import itertools

import pytest

METHODS = {"fp8", "int8", "int4_rtn", "int4_awq", "int4_qat"}


def judge_choose(s):
    eight_bit = "fp8" if s["fp8_tensor_cores"] else "int8"
    if s["fits_at_8bit"] and s["batch_size"] >= 32:
        return eight_bit
    if s["accuracy_budget"] >= 0.05:
        return "int4_rtn"
    if s["accuracy_budget"] >= 0.01:
        return "int4_awq"
    if s["can_finetune"]:
        return "int4_qat"
    return eight_bit if s["fits_at_8bit"] else "int4_awq"


def scenarios(batch_sizes, budgets, fits):
    for batch, fp8, budget, finetune, fit in itertools.product(
            batch_sizes, (True, False), budgets, (True, False), fits):
        yield dict(batch_size=batch, fp8_tensor_cores=fp8, accuracy_budget=budget, can_finetune=finetune,
                   fits_at_8bit=fit)


def check(student, cases, what):
    wrong = []
    for scenario in cases:
        got = student.choose_method(scenario)
        assert isinstance(got, str) and got in METHODS, (
            f"choose_method must return one of {sorted(METHODS)}, got {got!r:.60}")
        if got != judge_choose(scenario):
            wrong.append((scenario, got))
    assert not wrong, (f"{what}: {len(wrong)} of {len(cases)} scenarios differ from the tree, e.g. "
                       f"{wrong[0][0]} -> {wrong[0][1]!r}, the tree says {judge_choose(wrong[0][0])!r}")


@pytest.mark.points(2)
def test_compute_bound(student):
    """large batches that fit at 8 bits: 8-bit weights and activations, FP8 where the hardware has it"""
    check(student, list(scenarios((32, 33, 96, 512), (0.001, 0.02, 0.1), (True,))), "compute-bound")


@pytest.mark.points(2)
def test_memory_bound(student):
    """small batches: INT4 weights, the method chosen by the accuracy and training budgets"""
    check(student, list(scenarios((1, 4, 16, 31), (0.0, 0.004, 0.0099, 0.01, 0.03, 0.0499, 0.05, 0.3), (True,))),
          "memory-bound")


@pytest.mark.points(1)
def test_four_bits_forced(student):
    """when 8 bits do not fit, INT4 at any batch size, and never an 8-bit answer"""
    check(student, list(scenarios((1, 31, 32, 256), (0.0, 0.005, 0.01, 0.05, 0.2), (False,))), "8 bits do not fit")
