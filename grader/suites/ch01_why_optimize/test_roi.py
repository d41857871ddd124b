import math
import random

import pytest

KEYS = {"cost_per_million_after", "monthly_savings_usd", "payback_months", "roi"}


def expected(speedup, monthly_tokens, cost_per_million_before, engineering_cost_usd, horizon_months=12):
    after = cost_per_million_before / speedup
    savings = monthly_tokens / 1e6 * (cost_per_million_before - after)
    payback = engineering_cost_usd / savings if savings > 0 else math.inf
    roi = (horizon_months * savings - engineering_cost_usd) / engineering_cost_usd
    return {"cost_per_million_after": after, "monthly_savings_usd": savings,
            "payback_months": payback, "roi": roi}


def _random_case(rng):
    return dict(speedup=rng.uniform(1.05, 8.0), monthly_tokens=10 ** rng.uniform(7, 12),
                cost_per_million_before=rng.uniform(0.02, 15.0),
                engineering_cost_usd=rng.uniform(1e3, 5e5), horizon_months=rng.choice([6, 12, 24, 36]))


@pytest.mark.points(2)
def test_every_field_on_fresh_inputs(student):
    """all four fields match the formulas on 30 random optimizations"""
    rng = random.Random(7)
    for _ in range(30):
        case = _random_case(rng)
        got = student.optimization_roi(**case)
        assert isinstance(got, dict) and set(got) == KEYS, (
            f"return a dict with exactly the keys {sorted(KEYS)}, got {got!r}")
        for key, want in expected(**case).items():
            assert math.isclose(got[key], want, rel_tol=1e-9), (
                f"{key} is {got[key]:.6g}, expected {want:.6g} for "
                f"{ {k: round(v, 4) for k, v in case.items()} }")


def test_default_horizon_is_twelve_months(student):
    """the ROI horizon defaults to 12 months"""
    got = student.optimization_roi(3.0, 2e9, 2.0, 10_000)
    want = expected(3.0, 2e9, 2.0, 10_000, 12)["roi"]
    assert math.isclose(got["roi"], want, rel_tol=1e-9), f"roi {got['roi']:.6g}, expected {want:.6g}"


def test_slowdown_has_negative_savings_and_never_pays_back(student):
    """a speed-up below 1 gives negative savings, infinite payback and ROI below -100 %"""
    got = student.optimization_roi(0.5, 1e9, 1.0, 1_000, 12)
    assert got["monthly_savings_usd"] < 0, "a slowdown costs money: savings must be negative"
    assert got["payback_months"] == math.inf, "a slowdown never pays back: use math.inf"
    assert got["roi"] < -1, f"ROI should be below -1 (the cost is lost and more), got {got['roi']:.4g}"


def test_no_gain_never_pays_back(student):
    """a speed-up of exactly 1 saves nothing and never pays back"""
    got = student.optimization_roi(1.0, 1e9, 1.0, 1_000)
    assert got["monthly_savings_usd"] == 0, "no speed-up, no savings"
    assert got["payback_months"] == math.inf, "zero savings never pay back: use math.inf, not a division error"
    assert math.isclose(got["roi"], -1.0), "the whole engineering cost is lost: ROI = -1"


@pytest.mark.parametrize("bad", [
    (0.0, 1e9, 1.0, 1000.0), (-2.0, 1e9, 1.0, 1000.0), (2.0, -1.0, 1.0, 1000.0),
    (2.0, 1e9, -1.0, 1000.0), (2.0, 1e9, 1.0, 0.0), (2.0, 1e9, 1.0, 1000.0, 0.0),
], ids=["zero-speedup", "negative-speedup", "negative-traffic", "negative-price",
        "free-engineering", "zero-horizon"])
@pytest.mark.points(0.5)
def test_rejects_invalid_input(student, bad):
    """rejects an invalid input with ValueError"""
    with pytest.raises(ValueError):
        student.optimization_roi(*bad)
        raise AssertionError(f"optimization_roi{bad} returned instead of raising ValueError")
