"""Exercise 7, part 1: serving memory (weights with scale overhead, KV cache, activations) and
GPUs needed. The judge computes every expected value with its own arithmetic."""
import math
import random

import pytest

from grader.suites._answers import number

PARTS = ("weights", "kv_cache", "activations", "total")


def judge_memory(n_params, bits, group_size, n_layers, n_kv_heads, head_dim, kv_tokens, step_tokens,
                 hidden, intermediate, kv_bytes=2, act_bytes=2, scale_bytes=2, zero_bytes=0):
    weights = n_params * bits / 8 + (0 if group_size is None else n_params / group_size * (scale_bytes + zero_bytes))
    kv = 2 * n_layers * n_kv_heads * head_dim * kv_tokens * kv_bytes
    activations = step_tokens * (hidden + 2 * intermediate) * act_bytes
    return {"weights": weights / 1e9, "kv_cache": kv / 1e9, "activations": activations / 1e9,
            "total": (weights + kv + activations) / 1e9}


def memory_cases():
    yield (8.03e9, 16, None, 32, 8, 128, 32 * 4096, 32, 4096, 14336), {}  # Llama-3.1-8B, BF16
    yield (8.03e9, 4, 128, 32, 8, 128, 16 * 8192, 16, 4096, 14336), {}  # INT4 g128
    yield (70.6e9, 4, 32, 80, 8, 128, 8 * 8192, 2048, 8192, 28672), {"kv_bytes_per_element": 1}  # FP8 KV
    yield (1.0e12, 4, 32, 0, 0, 0, 0, 0, 0, 0), {"scale_bytes": 2, "zero_bytes": 1}  # zero-points too
    rng = random.Random(770)
    for _ in range(6):
        group = rng.choice([None, 32, 64, 128])
        yield ((rng.uniform(1e8, 1e12), rng.choice([16, 8, 4, 3]), group, rng.randint(1, 96), rng.randint(1, 16),
                rng.choice([64, 128, 256]), rng.randint(0, 10**6), rng.randint(1, 8192), rng.choice([2048, 4096, 8192]),
                rng.choice([5632, 14336, 28672])),
               {"kv_bytes_per_element": rng.choice([1, 2]), "activation_bytes_per_element": rng.choice([2, 4]),
                "scale_bytes": rng.choice([2, 4]), "zero_bytes": rng.choice([0, 1])})


@pytest.mark.points(3)
def test_serving_memory(student):
    """weights with scale (and zero-point) overhead per group, KV cache, activations, total, in GB"""
    for args, kwargs in memory_cases():
        judge_kwargs = {"kv_bytes": kwargs.get("kv_bytes_per_element", 2),
                        "act_bytes": kwargs.get("activation_bytes_per_element", 2),
                        "scale_bytes": kwargs.get("scale_bytes", 2), "zero_bytes": kwargs.get("zero_bytes", 0)}
        want = judge_memory(*args, **judge_kwargs)
        got = student.serving_memory_gb(*args, **kwargs)
        assert isinstance(got, dict) and set(got) >= set(PARTS), (
            f"serving_memory_gb must return a dict with the keys {list(PARTS)}, got {got!r:.200}")
        for part in PARTS:
            value = number(got[part], f"serving_memory_gb(...)[{part!r}]")
            assert math.isclose(value, want[part], rel_tol=1e-9, abs_tol=1e-12), (
                f"{part}: {want[part]:.6g} GB expected, got {value:.6g} for n_params={args[0]:.3g}, "
                f"{args[1]} bits, group_size={args[2]}, {kwargs or 'default bytes'}. GB are 1e9 bytes; "
                f"a scale (and zero-point) per group of weights; K and V per KV head and layer")


@pytest.mark.points(1)
def test_gpus_needed(student):
    """the fewest whole GPUs whose usable memory holds the total"""
    cases = [(141.0, 141.0, 1.0), (141.1, 141.0, 1.0), (2000.0, 141.0, 0.9), (515.625, 141.0, 0.9),
             (0.5, 80.0, 0.9), (1000.0, 141.0, 0.9), (160.0, 80.0, 1.0)]
    for total, memory, fraction in cases:
        want = math.ceil(total / (memory * fraction))
        got = student.gpus_needed(total, memory, fraction)
        assert type(got) is int and got == want, (
            f"gpus_needed({total}, {memory}, {fraction}) must be the int {want}, got {got!r:.50}: a GPU is whole")
