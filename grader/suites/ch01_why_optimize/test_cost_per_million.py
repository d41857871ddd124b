import math
import random

import pytest

SECONDS_PER_HOUR = 3600


def expected_cost(tokens_per_second, gpu_hourly_usd, utilization=1.0, num_gpus=1):
    return num_gpus * gpu_hourly_usd / (tokens_per_second * SECONDS_PER_HOUR * utilization) * 1e6


@pytest.mark.points(2)
def test_matches_the_formula_on_fresh_inputs(student):
    """cost_per_million_tokens matches the formula on 40 random replicas"""
    rng = random.Random(20261125)
    for _ in range(40):
        args = dict(tokens_per_second=10 ** rng.uniform(0, 5), gpu_hourly_usd=rng.uniform(0.1, 20),
                    utilization=rng.uniform(0.05, 1.0), num_gpus=rng.randint(1, 16))
        got = student.cost_per_million_tokens(**args)
        want = expected_cost(**args)
        assert isinstance(got, (int, float)), f"return a number, got {type(got).__name__}"
        assert math.isclose(got, want, rel_tol=1e-9), (
            f"cost_per_million_tokens({', '.join(f'{k}={v:.4g}' for k, v in args.items())}) "
            f"returned {got:.6g}, expected {want:.6g} USD")


def test_positional_arguments_in_documented_order(student):
    """accepts (tokens_per_second, gpu_hourly_usd, utilization, num_gpus) positionally"""
    got = student.cost_per_million_tokens(500.0, 4.0, 0.8, 2)
    assert math.isclose(got, expected_cost(500.0, 4.0, 0.8, 2), rel_tol=1e-9), (
        f"got {got:.6g}: check the order of the parameters against the docstring")


def test_free_gpu_costs_nothing(student):
    """a price of 0 USD per GPU-hour gives a cost of 0"""
    got = student.cost_per_million_tokens(1234.0, 0.0)
    assert got == 0, f"a free GPU-hour should give 0 USD per 1M tokens, got {got!r}"


@pytest.mark.parametrize("bad", [
    {"tokens_per_second": 0.0, "gpu_hourly_usd": 2.0},
    {"tokens_per_second": -5.0, "gpu_hourly_usd": 2.0},
    {"tokens_per_second": float("nan"), "gpu_hourly_usd": 2.0},
    {"tokens_per_second": float("inf"), "gpu_hourly_usd": 2.0},
    {"tokens_per_second": 100.0, "gpu_hourly_usd": -0.01},
    {"tokens_per_second": 100.0, "gpu_hourly_usd": 2.0, "utilization": 0.0},
    {"tokens_per_second": 100.0, "gpu_hourly_usd": 2.0, "utilization": 1.2},
    {"tokens_per_second": 100.0, "gpu_hourly_usd": 2.0, "num_gpus": 0},
    {"tokens_per_second": 100.0, "gpu_hourly_usd": 2.0, "num_gpus": 1.5},
], ids=["zero-throughput", "negative-throughput", "nan-throughput", "inf-throughput",
        "negative-price", "zero-utilization", "utilization-above-one", "zero-gpus", "fractional-gpus"])
@pytest.mark.points(0.5)
def test_rejects_invalid_input(student, bad):
    """rejects an invalid input with ValueError"""
    with pytest.raises(ValueError):
        student.cost_per_million_tokens(**bad)
        raise AssertionError(f"cost_per_million_tokens(**{bad}) returned instead of raising ValueError")


def test_percentage_utilization_message_says_fraction(student):
    """a utilisation of 80 raises ValueError whose message points at the percentage"""
    with pytest.raises(ValueError) as error:
        student.cost_per_million_tokens(100.0, 2.0, utilization=80)
        raise AssertionError("utilization=80 returned instead of raising ValueError")
    message = str(error.value).lower()
    assert "0.8" in message or "percent" in message or "%" in message or "fraction" in message, (
        f"the message {str(error.value)!r} should tell the student to pass a fraction (0.8), not 80")
