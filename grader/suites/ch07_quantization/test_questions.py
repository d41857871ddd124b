"""The chapter's questions (思考题): Q1 and Q2 are numbers the judge computes itself, Q3 a
choice."""
import math

import pytest

from grader.suites._answers import number


@pytest.mark.points(1)
def test_h200s_for_a_trillion_int4_weights(student):
    """Q1: H200s (141 GB, 90 % usable) for 1e12 weights in INT4 with a float16 scale per 32"""
    want = math.ceil(1.0e12 * (4 + 16 / 32) / 8 / 1e9 / (141.0 * 0.9))
    got = student.q1_h200s_for_int4_trillion()
    assert type(got) is int, f"Q1: return a whole number of GPUs (an int), got {got!r:.60}"
    assert got == want, (f"Q1: {got} is not right: count the scale of every group of 32 "
                         f"weights, and whole GPUs of 90 % of 141 GB")


@pytest.mark.points(2)
def test_int4_decode_speedup(student):
    """Q2: Llama-3.1-8B batch-1 weight-read bound, INT4 g128 linears over BF16, LM head in BF16"""
    table = 128256 * 4096
    linears = 8.03e9 - 2 * table
    want = (linears * 2 + table * 2 + 4096 * 2) / (linears * 4.125 / 8 + table * 2 + 4096 * 2)
    got = number(student.q2_int4_decode_speedup(), "q2_int4_decode_speedup()")
    assert abs(got - want) <= 0.01 * want, (
        f"Q2: {got:g} is not right: only the block linears shrink, to 4.125 bits; the LM head "
        f"(128,256 x 4,096) and one embedding row are still read in BF16")


@pytest.mark.points(1)
def test_large_batch_w4a16(student):
    """Q3: W4A16 against FP8 at a compute-bound batch"""
    got = student.q3_large_batch_w4a16()
    assert got in ("a", "b", "c"), f'Q3: return "a", "b" or "c", got {got!r:.40}'
    assert got == "b", "Q3: not that one: which tensor cores does a W4A16 kernel multiply on?"
