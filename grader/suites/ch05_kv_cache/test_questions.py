"""The chapter's questions (思考题): each answer is the number a function returns; the
judge computes each answer itself."""
import math

import pytest

from grader.suites._answers import number


def answer(student, name):
    return number(getattr(student, name)(), f"{name}()")


@pytest.mark.points(2)
def test_paging_capacity_gain(student):
    """Q1: how many more requests paging runs at once than an 8,192-token reservation"""
    from llmopt.simulator import H100_SXM, LLAMA3_8B, CostModel

    blocks = CostModel(H100_SXM, LLAMA3_8B).kv_blocks(16, 0.9, other_bytes=128256 * 4096 * 2)
    want = (blocks // math.ceil(1000 / 16)) / (blocks // (8192 // 16))
    got = answer(student, "q1_paging_capacity_gain")
    assert abs(got - want) <= 0.03 * want, (
        f"Q1: {got:g} is not right: count the blocks the pool holds, then the "
        f"whole requests of each kind that fit")


@pytest.mark.points(2)
def test_mla_saving(student):
    """Q2: GQA (8 KV heads of 128) over MLA's KV bytes per token, 61 layers, BF16"""
    want = (2 * 61 * 8 * 128 * 2) / (61 * (512 + 64) * 2)
    got = answer(student, "q2_mla_saving")
    assert abs(got - want) <= 0.01 * want, (
        f"Q2: {got:g} is not right: MLA caches one latent and one RoPE key per layer, "
        f"no separate values")


@pytest.mark.points(2)
def test_prefill_saved_fraction(student):
    """Q3: the fraction of a 2,000-token prompt's prefill saved by 1,500 cached tokens"""
    want = (1500 // 16) * 16 / 2000
    got = answer(student, "q3_prefill_saved_fraction")
    assert abs(got - want) <= 0.002, (
        f"Q3: {got:g} is not right: which cached tokens can a request "
        f"actually reuse?")
