"""Exercise 3: FLOPs and bytes of one forward step of a Llama-family model (prefill,
decode, chunked prefill after a context), against the judge's formula."""
import pytest

from grader.suites._answers import number
from grader.suites.ch03_gpu_fundamentals._shapes import HIDDEN_SHAPES, LLAMA_3_1_8B, block_linears, head_dim


def want(c, batch, new, context, wb=4, kb=4):
    n_layers, heads = c["num_hidden_layers"], c["num_attention_heads"]
    linears, head = n_layers * block_linears(c), c["vocab_size"] * c["hidden_size"]
    pairs = batch * (new * context + new * (new + 1) // 2)
    flops = 2.0 * linears * batch * new + 2.0 * head * batch + 4.0 * n_layers * heads * head_dim(c) * pairs
    kv = n_layers * 2 * c["num_key_value_heads"] * head_dim(c) * batch * (context + new)
    return flops, (linears + head) * wb + kv * kb


def check(student, c, batch, new, context, **formats):
    got = student.step_cost(c, batch, new, context, **formats)
    assert isinstance(got, (tuple, list)) and len(got) == 2, f"step_cost returns (flops, bytes), got {got!r:.80}"
    w = want(c, batch, new, context, formats.get("weight_bytes", 4), formats.get("kv_bytes", 4))
    what = f"step_cost(batch {batch}, new_tokens {new}, context {context}, {formats or 'fp32'})"
    flops, moved = number(got[0], f"FLOPs of {what}"), number(got[1], f"bytes of {what}")
    assert abs(flops - w[0]) <= 1e-9 * w[0], (
        f"FLOPs of {what}: {flops:.6g}, expected {w[0]:.6g}. 2 x block linear parameters per token, the LM head "
        f"for one token per sequence, attention 4 x heads x head_dim per layer per (query, visible key) pair; "
        f"new token i (from 0) sees context + i + 1 keys")
    assert abs(moved - w[1]) <= 1e-9 * w[1], (
        f"bytes of {what}: {moved:.6g}, expected {w[1]:.6g}. Weights (block linears and the LM head) are read "
        f"once per step whatever the batch; per layer the cached K and V of every sequence are read and the new "
        f"tokens' written")


@pytest.mark.points(2)
def test_decode_steps(student):
    """decode (one new token) at batch 1 to 256 and contexts 0 to 32k, BF16 and fp32"""
    for c in (LLAMA_3_1_8B, HIDDEN_SHAPES[0], HIDDEN_SHAPES[2]):
        for batch, context in ((1, 0), (1, 4096), (64, 4096), (256, 777), (3, 32768)):
            check(student, c, batch, 1, context, weight_bytes=2, kv_bytes=2)
    check(student, HIDDEN_SHAPES[3], 5, 1, 100)


@pytest.mark.points(2)
def test_prefill_and_chunks(student):
    """prefill of whole prompts (causal pairs) and a chunk after a cached context, other formats"""
    for c in (LLAMA_3_1_8B, HIDDEN_SHAPES[1], HIDDEN_SHAPES[2]):
        check(student, c, 1, 2048, 0, weight_bytes=2, kv_bytes=2)
        check(student, c, 4, 129, 0)
        check(student, c, 2, 512, 1500, weight_bytes=1, kv_bytes=1)
