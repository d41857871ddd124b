import pytest
from hypothesis import HealthCheck, given, settings
from _simulation import check_goodput_near_reference, check_invariants, random_traces, run_reference, run_student

from llmopt.metrics import summarize
from llmopt.workload import make_trace

POLICY = "DecodeScheduler"


@pytest.mark.points(2)
@pytest.mark.timeout(25)
@settings(derandomize=True, max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=random_traces(20, 400, 60, [0.0, 0.001, 0.01], 80))
def test_decode_starts_only_after_the_kv_arrived(student, case):
    """no decode before the KV cache lands; budgets kept; every request finishes exactly once"""
    trace, num_blocks, max_num_seqs = case
    requests, stats, violations = run_student(
        student, POLICY, trace, disaggregated=True, num_blocks=num_blocks, block_size=8,
        max_num_seqs=max_num_seqs, link_bytes_per_s=2e9)  # a slow link: transfers take a while
    for r in requests:
        if r["first_decode_s"] is not None:
            assert r["first_decode_s"] > r["kv_ready_s"], (
                f"request {r['request_id']} decoded before its KV cache arrived "
                f"(t={r['kv_ready_s']:.6f} s): admit only when seq.kv_ready_s <= now")
    check_invariants(requests, stats, violations, num_blocks, max_num_seqs)


@pytest.mark.points(2)
def test_beats_colocated_under_a_tight_tpot_slo(student, reference):
    """1 prefill + 1 decode GPU keep more requests within a 10 ms TPOT SLO than 2 colocated GPUs"""
    trace = make_trace(250, 20, seed=73, prompt_median=1500, prompt_sigma=0.8, output_median=150,
                       prompt_max=8000)
    setup = dict(num_blocks=20000, max_num_seqs=64)
    requests, _, violations, colocated = run_student(
        student, POLICY, trace, disaggregated=True, meanwhile=lambda: summarize(
            run_reference(reference.ContinuousBatchingScheduler, trace, instances=2, **setup), 1.0, 0.010)["slo_attainment"],
        **setup)
    assert not violations, violations[0]
    mine = summarize(requests, 1.0, 0.010)["slo_attainment"]
    assert mine > colocated, (f"disaggregated: {mine:.1%} of requests met the SLO, not more than "
                              f"colocated's {colocated:.1%}")


@pytest.mark.points(2)
def test_goodput_near_the_reference(student, reference):
    """SLO attainment at least 90% of the reference decode scheduler's, with memory pressure"""
    trace = make_trace(200, 16, seed=81, prompt_median=1000, prompt_sigma=0.8, output_median=200,
                       prompt_max=6000)
    setup = dict(num_blocks=2500, max_num_seqs=48, link_bytes_per_s=50e9)
    check_goodput_near_reference(student, POLICY, reference.DecodeScheduler, trace, (1.5, 0.015), disaggregated=True, **setup)
