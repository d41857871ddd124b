"""The chapter's questions (思考题): Q1 and Q2 are numbers the judge computes itself, Q3 a
choice."""
import pytest

from grader.suites._answers import number
from grader.suites.ch03_gpu_fundamentals._shapes import LLAMA_3_1_8B, block_linears


@pytest.mark.points(1)
def test_h200_decode_bound(student):
    """Q1: Llama-3.1-8B BF16 batch 1 on an H200, weights only"""
    c = LLAMA_3_1_8B
    weight_bytes = (c["num_hidden_layers"] * block_linears(c) + c["vocab_size"] * c["hidden_size"]) * 2
    want = 4.8e12 / weight_bytes
    got = number(student.q1_h200_decode_bound(), "q1_h200_decode_bound()")
    assert abs(got - want) <= 0.01 * want, (
        f"Q1: {got:g} is not right: bandwidth over the bytes of every block linear and the LM head in BF16")


@pytest.mark.points(2)
def test_compute_bound_batch(student):
    """Q2: the smallest batch at which the down projection reaches the H100's ridge"""
    ridge = 989.4e12 / 3.35e12
    n, k = 4096, 14336
    want = next(b for b in range(1, 10_000) if 2 * b * n * k / ((b * k + k * n + b * n) * 2) >= ridge)
    got = student.q2_compute_bound_batch()
    assert type(got) is int, f"Q2: return a whole batch (an int), got {got!r:.60}"
    assert got == want, (f"Q2: {got} is not right: the intensity of a (B x 14,336) @ (14,336 x 4,096) BF16 matmul "
                         f"counts the activations' bytes too, so it is a little below B")


@pytest.mark.points(1)
def test_small_model_on_gpu(student):
    """Q3: 20 MB at 3.35 TB/s against 80 launches of 5 us"""
    got = student.q3_small_model_on_gpu()
    assert got in ("a", "b", "c"), f'Q3: return "a", "b" or "c", got {got!r:.40}'
    assert got == "c", "Q3: not that one: compare the time to read 20 MB with 80 launches of 5 us each"
