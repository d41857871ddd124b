"""Negative control: the idle share of the paid hour is forgotten (utilisation ignored)."""
# targets: cost_per_million


def cost_per_million_tokens(tokens_per_second, gpu_hourly_usd, utilization=1.0, num_gpus=1):
    if tokens_per_second <= 0 or gpu_hourly_usd < 0 or not 0 < utilization <= 1 or num_gpus < 1:
        raise ValueError("invalid input")
    if num_gpus != int(num_gpus) or tokens_per_second != tokens_per_second:
        raise ValueError("invalid input")
    return num_gpus * gpu_hourly_usd / (tokens_per_second * 3600) * 1e6
