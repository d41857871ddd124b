import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from _simulation import check_goodput_near_reference, check_invariants, random_traces, run_reference, run_student

from course_config import THRESHOLDS
from llmopt.metrics import summarize
from llmopt.workload import make_trace

POLICY = "ChunkedPrefillScheduler"
TPOT_GAIN = THRESHOLDS["ch06_scheduling/chunked_tpot_p99_gain"].minimum
THROUGHPUT_KEPT = THRESHOLDS["ch06_scheduling/chunked_throughput_kept"].minimum


@pytest.mark.points(2)
@pytest.mark.timeout(25)
@settings(derandomize=True, max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=random_traces(20, 300, 60, [0.0, 0.002, 0.02], 80), budget=st.sampled_from([16, 33, 64, 128]))
def test_invariants_on_random_traces(student, case, budget):
    """token and block budgets respected, every request finishes once with exactly its length"""
    trace, num_blocks, max_num_seqs = case
    requests, stats, violations = run_student(student, POLICY, trace, num_blocks=num_blocks, block_size=8,
                                              max_num_seqs=max_num_seqs, max_num_batched_tokens=budget)
    check_invariants(requests, stats, violations, num_blocks, max_num_seqs, budget)


@pytest.mark.points(2)
def test_lower_p99_tpot_at_equal_throughput(student, reference):
    """lower p99 TPOT than (reference) continuous batching at equal throughput, long prompts"""
    trace = make_trace(150, 8, seed=52, prompt_median=1800, prompt_sigma=0.7, output_median=120,
                       prompt_max=8000)
    setup = dict(num_blocks=20000, max_num_seqs=64)
    requests, stats, violations, plain = run_student(
        student, POLICY, trace, max_num_batched_tokens=512,
        meanwhile=lambda: summarize(run_reference(reference.ContinuousBatchingScheduler, trace, **setup)), **setup)
    check_invariants(requests, stats, violations, 20000, 64, 512)
    mine = summarize(requests)
    assert plain["tpot_p99_s"] >= TPOT_GAIN * mine["tpot_p99_s"], (
        f"p99 TPOT {mine['tpot_p99_s'] * 1e3:.2f} ms vs {plain['tpot_p99_s'] * 1e3:.2f} ms without "
        f"chunking: schedule the decodes first and cap prefill chunks at the budget left")
    assert mine["throughput_tok_s"] >= THROUGHPUT_KEPT * plain["throughput_tok_s"], (
        f"throughput {mine['throughput_tok_s']:.0f} tok/s fell below {THROUGHPUT_KEPT:.0%} of continuous batching's "
        f"{plain['throughput_tok_s']:.0f}: fill the budget left after decodes with prefill chunks")


@pytest.mark.points(2)
def test_goodput_near_the_reference(student, reference):
    """SLO attainment at least 90% of the reference chunked policy's under a TPOT SLO"""
    trace = make_trace(200, 10, seed=61, prompt_median=1200, prompt_sigma=0.8, output_median=150,
                       prompt_max=8000)
    setup = dict(num_blocks=6000, max_num_seqs=48, max_num_batched_tokens=768)
    check_goodput_near_reference(student, POLICY, reference.ChunkedPrefillScheduler, trace, (1.0, 0.012), **setup)
