"""Serving metrics from per-request times: what users feel and what the owner pays for.

- TTFT (time to first token) = first_token_s - arrival_s: queueing plus prefill.
- TPOT (time per output token) = (finish_s - first_token_s) / (output_len - 1): the
  stream's pace after the first token (0 for a one-token answer).
- end-to-end latency = finish_s - arrival_s.
- throughput = output tokens / makespan (first arrival to last finish).
- SLO attainment = the fraction of requests that met *both* the TTFT and the TPOT target.
- goodput = the highest request *rate* a deployment serves while the SLO attainment stays
  at or above a target (90 % here) [@zhong2024-distserve]: a capacity, found by replaying
  the same trace at scaled arrival rates and bisecting (`goodput`). It is not "good
  requests per second of one run": below capacity that is just the offered load.

Percentiles use numpy's default (linear interpolation between order statistics).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np


def ttft(record: dict) -> float:
    return record["first_token_s"] - record["arrival_s"]


def tpot(record: dict) -> float:
    steps = record["output_len"] - 1
    return (record["finish_s"] - record["first_token_s"]) / steps if steps > 0 else 0.0


def e2e(record: dict) -> float:
    return record["finish_s"] - record["arrival_s"]


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else math.nan


def makespan(records: list[dict]) -> float:
    return max(r["finish_s"] for r in records) - min(r["arrival_s"] for r in records)


def meets_slo(record: dict, ttft_slo_s: float, tpot_slo_s: float) -> bool:
    return ttft(record) <= ttft_slo_s and tpot(record) <= tpot_slo_s


def summarize(records: list[dict], ttft_slo_s: float = math.inf, tpot_slo_s: float = math.inf) -> dict:
    """Latency percentiles, throughput and goodput of a finished run (see the module doc)."""
    if not records:
        raise ValueError("no requests to summarize")
    if any(r["finish_s"] is None for r in records):
        raise ValueError("every request must have finished (finish_s is None for some)")
    span = makespan(records)
    ttfts, tpots, e2es = [ttft(r) for r in records], [tpot(r) for r in records], [e2e(r) for r in records]
    good = sum(meets_slo(r, ttft_slo_s, tpot_slo_s) for r in records)
    out = {"num_requests": len(records), "duration_s": span,
           "throughput_tok_s": sum(r["output_len"] for r in records) / span,
           "request_rate": len(records) / span,
           "good_requests": good, "slo_attainment": good / len(records)}
    for name, values in (("ttft", ttfts), ("tpot", tpots), ("e2e", e2es)):
        for q in (50, 90, 99):
            out[f"{name}_p{q}_s"] = percentile(values, q)
        out[f"{name}_mean_s"] = float(np.mean(values))
    return out


def slo_attainment(records: list[dict], ttft_slo_s: float, tpot_slo_s: float) -> float:
    """The fraction of requests that met both targets."""
    return sum(meets_slo(r, ttft_slo_s, tpot_slo_s) for r in records) / len(records)


def goodput(run_at_rate: Callable[[float], list[dict]], ttft_slo_s: float, tpot_slo_s: float, *,
            attainment: float = 0.9, start_rate: float = 1.0, rel_tol: float = 0.05,
            max_rate: float = 1e4) -> float:
    """DistServe's goodput: the highest request rate (requests/s) at which the run that
    `run_at_rate(rate)` returns (its per-request records) meets both SLOs for at least
    `attainment` of its requests; 0.0 if even `start_rate / 64` does not.

    Bisection in log rate: it assumes attainment falls as the rate rises (more load never
    helps a request), and stops when the bracket is within `rel_tol`. Each probe is one
    simulation, about log2(range / rel_tol) of them.
    """
    def ok(rate: float) -> bool:
        return slo_attainment(run_at_rate(rate), ttft_slo_s, tpot_slo_s) >= attainment

    low, high = start_rate, start_rate
    if ok(start_rate):
        while high < max_rate:
            low, high = high, high * 4
            if not ok(high):
                break
        else:
            return max_rate
    else:
        while low > start_rate / 64:
            high, low = low, low / 4
            if ok(low):
                break
        else:
            return 0.0
    while high / low > 1 + rel_tol:
        middle = math.sqrt(low * high)
        low, high = (middle, high) if ok(middle) else (low, middle)
    return low
