"""Negative control: right formulas, but nonsense inputs are accepted silently."""
# targets: cost_per_million, roi
import math


def cost_per_million_tokens(tokens_per_second, gpu_hourly_usd, utilization=1.0, num_gpus=1):
    return num_gpus * gpu_hourly_usd / (tokens_per_second * 3600 * utilization) * 1e6


def optimization_roi(speedup, monthly_tokens, cost_per_million_before, engineering_cost_usd,
                     horizon_months=12):
    after = cost_per_million_before / speedup
    savings = monthly_tokens / 1e6 * (cost_per_million_before - after)
    payback = engineering_cost_usd / savings if savings > 0 else math.inf
    roi = (horizon_months * savings - engineering_cost_usd) / engineering_cost_usd
    return {"cost_per_million_after": after, "monthly_savings_usd": savings,
            "payback_months": payback, "roi": roi}
