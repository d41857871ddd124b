import math
import random

import pytest


@pytest.mark.points(1.5)
def test_compound_is_the_product(student):
    """compound_efficiency multiplies lists and dicts of random factors"""
    rng = random.Random(11)
    for n in range(1, 8):
        factors = [rng.uniform(0.1, 10.0) for _ in range(n)]
        want = math.prod(factors)
        got = student.compound_efficiency(factors)
        assert math.isclose(got, want, rel_tol=1e-9), f"compound_efficiency({factors}) = {got}, expected {want}"
        named = {f"gain{i}": f for i, f in enumerate(factors)}
        got = student.compound_efficiency(named)
        assert math.isclose(got, want, rel_tol=1e-9), "a dict of name -> factor: multiply its values"
    assert student.compound_efficiency({}) == 1.0, "an empty dict is a factor of 1"


def test_factors_below_one_shrink(student):
    """factors below 1 (a slowdown, a price rise) multiply in too"""
    got = student.compound_efficiency([0.5, 0.5, 4.0])
    assert math.isclose(got, 1.0), f"0.5 x 0.5 x 4 = 1, got {got}"


@pytest.mark.points(1.5)
def test_annual_factor_and_years_round_trip(student):
    """implied_annual_factor and years_to_factor match the formulas and invert each other"""
    rng = random.Random(3)
    for _ in range(20):
        total, years = 10 ** rng.uniform(0.1, 6), rng.uniform(0.5, 12)
        annual = student.implied_annual_factor(total, years)
        assert math.isclose(annual, total ** (1 / years), rel_tol=1e-9), (
            f"implied_annual_factor({total:.4g}, {years:.3g}) = {annual:.6g}, expected {total ** (1 / years):.6g}")
        back = student.years_to_factor(total, annual)
        assert math.isclose(back, years, rel_tol=1e-9), (
            f"years_to_factor({total:.4g}, {annual:.4g}) = {back:.6g}, expected {years:.6g}")


def test_headline_check(student):
    """50,000x at its own rate over 8 years (50000 ** (1/8) a year) takes 8 years"""
    got = student.years_to_factor(50_000, 50_000 ** (1 / 8))
    assert math.isclose(got, 8.0, rel_tol=1e-9), f"got {got:.6g} years, expected 8"


@pytest.mark.parametrize("call", [
    ("compound_efficiency", ([2.0, 0.0],)), ("compound_efficiency", ([2.0, -1.5],)),
    ("compound_efficiency", ({"a": float("inf")},)), ("implied_annual_factor", (0.0, 3.0)),
    ("implied_annual_factor", (100.0, 0.0)), ("years_to_factor", (100.0, 1.0)),
    ("years_to_factor", (100.0, 0.5)), ("years_to_factor", (-4.0, 10.0)),
], ids=["zero-factor", "negative-factor", "infinite-factor", "zero-total", "zero-years",
        "annual-one", "annual-below-one", "negative-target"])
@pytest.mark.points(0.25)
def test_rejects_invalid_input(student, call):
    """rejects an invalid input with ValueError"""
    name, args = call
    with pytest.raises(ValueError):
        getattr(student, name)(*args)
        raise AssertionError(f"{name}{args} returned instead of raising ValueError")
