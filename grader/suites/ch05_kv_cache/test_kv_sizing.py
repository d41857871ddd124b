"""Exercise 8: KV bytes per token (MHA, GQA, MLA, FP8) and sequences per GPU from the
simulator's block pool. The judge computes every expected value with its own arithmetic."""
import math
import random

import pytest

NAMED_SHAPES = [  # (what, n_layers, n_kv_heads, head_dim)
    ("Llama-2-7B, MHA", 32, 32, 128),
    ("Llama-3.1-8B, GQA", 32, 8, 128),
    ("Llama-3.1-70B, GQA", 80, 8, 128),
    ("the course model", 6, 2, 32),
]


def judge_blocks(memory, fraction, weights, other, block_size, per_token):
    return max(0, int((memory * fraction - weights - other) // (block_size * per_token)))


def as_int(value, what):
    assert isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer(), (
        f"{what}: return a whole number, got {value!r}"[:200])
    return int(value)


@pytest.mark.points(2)
def test_mha_gqa_fp8_bytes_per_token(student):
    """MHA and GQA KV bytes per token, in BF16 and FP8, for named and random shapes"""
    rng = random.Random(540)
    shapes = NAMED_SHAPES + [("random", rng.randint(1, 96), rng.randint(1, 64), rng.choice([64, 80, 128, 256]))
                             for _ in range(6)]
    for what, layers, kv_heads, head_dim in shapes:
        for element in (2, 1):
            want = 2 * layers * kv_heads * head_dim * element
            got = as_int(student.kv_bytes_per_token(layers, kv_heads, head_dim, element), what)
            assert got == want, (
                f"{what} ({layers} layers, {kv_heads} KV heads, head_dim {head_dim}, {element} byte(s) per "
                f"element): {want} bytes per token, got {got}. A key AND a value per KV head, every layer")


@pytest.mark.points(1)
def test_mla_bytes_per_token(student):
    """MLA: one latent plus one shared RoPE key per layer (DeepSeek-V3 and random shapes)"""
    rng = random.Random(541)
    cases = [(61, 512, 64, 2), (61, 512, 64, 1)] + [
        (rng.randint(1, 80), rng.choice([256, 512, 1024]), rng.choice([32, 64]), rng.choice([1, 2]))
        for _ in range(4)]
    for layers, latent, rope, element in cases:
        want = layers * (latent + rope) * element
        got = as_int(student.mla_kv_bytes_per_token(layers, latent, rope, element), "MLA")
        assert got == want, (
            f"{layers} layers, latent {latent}, RoPE key {rope}, {element} byte(s): {want} bytes per token, "
            f"got {got}. The latent replaces both keys and values, and all heads share it and the RoPE key")


@pytest.mark.points(3)
@pytest.mark.timeout(60)
def test_max_concurrent_sequences(student):
    """sequences that fit, counted in whole blocks of the simulator's pool (H100, H200, others)"""
    simulator = "llmopt.simulator"
    profile = student.library(f"{simulator}:ModelProfile")
    hardware_profile = student.library(f"{simulator}:HardwareProfile")
    from llmopt.simulator import H100_SXM, H200, LLAMA3_8B  # trusted, in the judge

    embedding = 128256 * 4096 * 2
    cases = [  # (hardware name, memory, model: (weights, kv per token), context, block, fraction, other)
        ("H100_SXM", H100_SXM.memory_bytes, (LLAMA3_8B.weight_bytes, LLAMA3_8B.kv_bytes_per_token), 8192, 16, 0.9, embedding),
        ("H200", H200.memory_bytes, (LLAMA3_8B.weight_bytes, LLAMA3_8B.kv_bytes_per_token), 8192, 16, 0.9, embedding),
        ("H100_SXM", H100_SXM.memory_bytes, (LLAMA3_8B.weight_bytes, 65536), 8000, 16, 0.9, 0.0),
        ("custom", 48e9, (14e9, 524288), 4097, 256, 0.8, 2e9),  # 17 blocks of 256, not 4,097 tokens
        ("custom", 24e9, (30e9, 131072), 1024, 16, 0.9, 0.0),  # the weights do not fit
        ("custom", 141e9, (40e9, 70272), 100, 64, 0.95, 0.0),  # 2 blocks of 64 per sequence
    ]
    for name, memory, (weights, per_token), context, block_size, fraction, other in cases:
        hardware = (student.library(f"{simulator}:{name}") if name != "custom"
                    else hardware_profile("custom", 1e15, 3e12, memory))
        model = profile("judge model", weights, weights, per_token, 32, 4096)
        want = judge_blocks(memory, fraction, weights, other, block_size, per_token) // math.ceil(context / block_size)
        got = as_int(student.max_concurrent_sequences(hardware, model, context, block_size, fraction, other),
                     "max_concurrent_sequences")
        assert got == want, (
            f"{memory / 1e9:.0f} GB device, {weights / 1e9:.0f} GB weights, {per_token} KV bytes per token, "
            f"context {context}, blocks of {block_size}, fraction {fraction}, other {other / 1e9:.2f} GB: "
            f"{want} sequences fit, got {got}. Use CostModel.kv_blocks and count whole blocks per sequence")
