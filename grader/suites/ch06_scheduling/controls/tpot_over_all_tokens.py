"""Negative control: TPOT divides by output_len instead of output_len - 1 (and never checks input)."""
# targets: metrics
import numpy as np


def summarize_run(records, ttft_slo_s, tpot_slo_s):
    ttft = np.array([r["first_token_s"] - r["arrival_s"] for r in records])
    tpot = np.array([(r["finish_s"] - r["first_token_s"]) / r["output_len"] for r in records])
    e2e = np.array([r["finish_s"] - r["arrival_s"] for r in records])
    span = max(r["finish_s"] for r in records) - min(r["arrival_s"] for r in records)
    good = np.sum((ttft <= ttft_slo_s) & (tpot <= tpot_slo_s))
    return {"ttft_p50_s": float(np.percentile(ttft, 50)), "ttft_p99_s": float(np.percentile(ttft, 99)),
            "tpot_p50_s": float(np.percentile(tpot, 50)), "tpot_p99_s": float(np.percentile(tpot, 99)),
            "e2e_p99_s": float(np.percentile(e2e, 99)),
            "throughput_tok_s": sum(r["output_len"] for r in records) / span,
            "slo_attainment": float(good) / len(records)}
