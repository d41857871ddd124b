"""Negative control: ROI counts the savings but forgets to subtract the engineering cost."""
# targets: roi


def optimization_roi(speedup, monthly_tokens, cost_per_million_before, engineering_cost_usd,
                     horizon_months=12):
    if speedup <= 0 or monthly_tokens < 0 or cost_per_million_before < 0:
        raise ValueError("invalid input")
    if engineering_cost_usd <= 0 or horizon_months <= 0:
        raise ValueError("invalid input")
    after = cost_per_million_before / speedup
    savings = monthly_tokens / 1e6 * (cost_per_million_before - after)
    payback = engineering_cost_usd / savings if savings > 0 else float("inf")
    return {"cost_per_million_after": after, "monthly_savings_usd": savings,
            "payback_months": payback, "roi": horizon_months * savings / engineering_cost_usd}
