import math
import random

import numpy as np
import pytest

KEYS = {"ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "e2e_p99_s", "throughput_tok_s",
        "slo_attainment"}


def expected(records, ttft_slo, tpot_slo):
    ttft = [r["first_token_s"] - r["arrival_s"] for r in records]
    tpot = [(r["finish_s"] - r["first_token_s"]) / (r["output_len"] - 1) if r["output_len"] > 1 else 0.0
            for r in records]
    e2e = [r["finish_s"] - r["arrival_s"] for r in records]
    span = max(r["finish_s"] for r in records) - min(r["arrival_s"] for r in records)
    good = sum(a <= ttft_slo and b <= tpot_slo for a, b in zip(ttft, tpot))
    return {"ttft_p50_s": np.percentile(ttft, 50), "ttft_p99_s": np.percentile(ttft, 99),
            "tpot_p50_s": np.percentile(tpot, 50), "tpot_p99_s": np.percentile(tpot, 99),
            "e2e_p99_s": np.percentile(e2e, 99), "throughput_tok_s": sum(r["output_len"] for r in records) / span,
            "slo_attainment": good / len(records)}


def random_records(rng, n):
    out = []
    for _ in range(n):
        arrival = rng.uniform(0, 50)
        first = arrival + rng.expovariate(2.0)
        length = rng.choice([1, 1, 2, rng.randint(2, 500)])
        out.append({"request_id": len(out), "arrival_s": arrival, "first_token_s": first,
                    "finish_s": first + (length - 1) * rng.uniform(0.002, 0.05), "output_len": length,
                    "prompt_len": rng.randint(1, 999)})
    return out


@pytest.mark.points(2.5)
def test_matches_the_definitions_on_random_runs(student):
    """every key matches the definitions on 20 random runs"""
    rng = random.Random(606)
    for trial in range(20):
        records = random_records(rng, rng.randint(1, 60))
        slo = (rng.uniform(0.1, 2.0), rng.uniform(0.005, 0.05))
        got = student.summarize_run(records, *slo)
        want = expected(records, *slo)
        assert set(got) == KEYS, f"return exactly the keys {sorted(KEYS)}, got {sorted(got)}"
        for key in KEYS:
            assert math.isclose(got[key], want[key], rel_tol=1e-9, abs_tol=1e-12), (
                f"{key} = {got[key]:.6g}, expected {want[key]:.6g} (run {trial}, {len(records)} requests)")


@pytest.mark.points(0.5)
def test_attainment_needs_both_targets(student):
    """a request meeting only the TTFT or only the TPOT target does not count"""
    records = [{"arrival_s": 0.0, "first_token_s": 0.1, "finish_s": 10.1, "output_len": 11},
               {"arrival_s": 0.0, "first_token_s": 5.0, "finish_s": 5.1, "output_len": 11},
               {"arrival_s": 0.0, "first_token_s": 0.1, "finish_s": 0.2, "output_len": 11}]
    got = student.summarize_run(records, 1.0, 0.05)["slo_attainment"]
    assert math.isclose(got, 1 / 3), f"only the third request meets both targets: expected {1 / 3:.4f}, got {got}"


@pytest.mark.parametrize("records", [[], [{"arrival_s": 0.0, "first_token_s": 0.1, "finish_s": None,
                                           "output_len": 3}]], ids=["no-records", "unfinished"])
@pytest.mark.points(0.5)
def test_rejects_invalid_runs(student, records):
    """no records, or a request that never finished, raise ValueError"""
    with pytest.raises(ValueError):
        student.summarize_run(records, 1.0, 0.05)
        raise AssertionError("summarize_run returned instead of raising ValueError")
