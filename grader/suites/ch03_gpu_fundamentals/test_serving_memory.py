"""Exercise 1: parameters, KV bytes per token, the serving-memory formula and the largest
batch that fits, against the judge's own formulas on shapes the notebook never shows."""
import pytest

from grader.suites._answers import number
from grader.suites.ch03_gpu_fundamentals._shapes import (HIDDEN_SHAPES, LLAMA_3_1_8B, kv_per_token, memory,
                                                         parameters)

SHAPES = [LLAMA_3_1_8B] + HIDDEN_SHAPES


@pytest.mark.points(1)
def test_parameter_count(student):
    """embedding, blocks (q, k, v, o, gate, up, down, two norms), final norm, LM head unless tied"""
    for c in SHAPES:
        got = student.parameter_count(c)
        assert got == parameters(c), (
            f"parameter_count of a {c['num_hidden_layers']}-layer model (hidden {c['hidden_size']}, heads "
            f"{c['num_attention_heads']}/{c['num_key_value_heads']}, tied: {c.get('tie_word_embeddings', False)}) "
            f"= {got!r:.30}, expected {parameters(c):,}. A tied LM head is the embedding (count it once); a "
            f"missing head_dim is hidden_size // num_attention_heads")


@pytest.mark.points(1)
def test_kv_bytes_per_token(student):
    """2 (K and V) x layers x KV heads x head_dim x bytes, for 1, 2 and 4 bytes per element"""
    for c in SHAPES:
        for b in (1, 2, 4):
            got = number(student.kv_bytes_per_token(c, b), "kv_bytes_per_token")
            assert got == kv_per_token(c, b), (
                f"kv_bytes_per_token at {b} bytes per element: {got:,.0f}, expected {kv_per_token(c, b):,} "
                f"(a key AND a value per KV head, not per query head)")


@pytest.mark.points(2)
def test_serving_memory(student):
    """weights, KV cache, activations and their total, with other formats and chunk sizes"""
    cases = [(LLAMA_3_1_8B, 8, 4096, {}), (HIDDEN_SHAPES[1], 3, 30000, {"weight_bytes": 1, "kv_bytes": 1}),
             (HIDDEN_SHAPES[0], 17, 333, {"activation_bytes": 4, "prefill_chunk": 128}),
             (HIDDEN_SHAPES[3], 0, 8192, {"weight_bytes": 0.5625})]
    for c, batch, context, kwargs in cases:
        want = memory(c, batch, context, kwargs.get("weight_bytes", 2), kwargs.get("kv_bytes", 2),
                      kwargs.get("activation_bytes", 2), kwargs.get("prefill_chunk", 512))
        got = student.serving_memory(c, batch, context, **kwargs)
        assert isinstance(got, dict) and set(got) == set(want), (
            f"serving_memory returns a dict with the keys {sorted(want)}, got {got!r:.100}")
        for key in want:
            value = number(got[key], f"serving_memory(...)[{key!r}]")
            assert abs(value - want[key]) <= 1e-9 * max(1.0, want[key]), (
                f"serving_memory(batch {batch}, context {context}, {kwargs}): {key} = {value:,.0f}, expected "
                f"{want[key]:,.0f}")


@pytest.mark.points(2)
def test_max_batch(student):
    """the largest batch within usable x GPU bytes, on an H100, an H200 and cards too small"""
    cases = [(LLAMA_3_1_8B, 80e9, 8192, 0.9, {}), (LLAMA_3_1_8B, 141e9, 32768, 0.9, {}),
             (LLAMA_3_1_8B, 80e9, 4096, 0.8, {"kv_bytes": 1}), (HIDDEN_SHAPES[1], 80e9, 4096, 0.9, {}),
             (HIDDEN_SHAPES[1], 141e9, 2048, 0.95, {"weight_bytes": 0.5}), (HIDDEN_SHAPES[0], 3e6, 100, 1.0, {})]
    for c, gpu, context, usable, formats in cases:
        want = 0
        budget = usable * gpu
        kw = dict(wb=formats.get("weight_bytes", 2), kb=formats.get("kv_bytes", 2))
        if memory(c, 0, context, **kw)["total"] <= budget:
            while memory(c, want + 1, context, **kw)["total"] <= budget:
                want += 1
        got = student.max_batch(c, gpu, context, usable, **formats)
        assert type(got) is int, f"max_batch returns an int, got {got!r:.40}"
        assert got == want, (
            f"max_batch(hidden {c['hidden_size']}, {gpu / 1e9:g} GB, context {context}, usable {usable}, {formats}) "
            f"= {got}, expected {want}: the largest batch whose total is at most usable x gpu_bytes (0 if none)")
