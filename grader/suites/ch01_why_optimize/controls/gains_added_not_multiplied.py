"""Negative control: independent gains summed instead of multiplied, rates divided linearly."""
# targets: compounding
import math


def compound_efficiency(factors):
    values = list(factors.values()) if isinstance(factors, dict) else list(factors)
    if any(not (math.isfinite(v) and v > 0) for v in values):
        raise ValueError("factors must be > 0")
    return sum(values) if values else 1.0


def implied_annual_factor(total_factor, years):
    if total_factor <= 0 or years <= 0:
        raise ValueError("invalid input")
    return total_factor / years
