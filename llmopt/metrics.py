"""Serving metrics from per-request times: what users feel and what the owner pays for.

- TTFT (time to first token) = first_token_s - arrival_s: queueing plus prefill.
- TPOT (time per output token) = (finish_s - first_token_s) / (output_len - 1): the
  stream's pace after the first token (0 for a one-token answer).
- end-to-end latency = finish_s - arrival_s.
- throughput = output tokens / makespan (first arrival to last finish).
- goodput = requests per second that met *both* the TTFT and the TPOT target (DistServe's
  definition): throughput that nobody was too slow to use.

Percentiles use numpy's default (linear interpolation between order statistics).
"""

from __future__ import annotations

import math

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
           "goodput_rps": good / span, "slo_attainment": good / len(records)}
    for name, values in (("ttft", ttfts), ("tpot", tpots), ("e2e", e2es)):
        for q in (50, 90, 99):
            out[f"{name}_p{q}_s"] = percentile(values, q)
        out[f"{name}_mean_s"] = float(np.mean(values))
    return out
