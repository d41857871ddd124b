import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from reference_policies import RefChunked, RefContinuous, check_invariants, run_reference, run_student

from llmopt.metrics import summarize
from llmopt.workload import Request, make_trace

POLICY = "ChunkedPrefillScheduler"


@st.composite
def traces(draw):
    n = draw(st.integers(2, 20))
    prompts = draw(st.lists(st.integers(1, 300), min_size=n, max_size=n))
    outputs = draw(st.lists(st.integers(1, 60), min_size=n, max_size=n))
    gaps = draw(st.lists(st.sampled_from([0.0, 0.002, 0.02]), min_size=n, max_size=n))
    t, trace = 0.0, []
    for i in range(n):
        t += gaps[i]
        trace.append(Request(i, round(t, 6), prompts[i], outputs[i]))
    biggest = max(-(-(p + o) // 8) for p, o in zip(prompts, outputs))
    return trace, draw(st.integers(biggest + 1, biggest + 80)), draw(st.integers(1, 8)), \
        draw(st.sampled_from([16, 33, 64, 128]))


@pytest.mark.points(2)
@pytest.mark.timeout(25)
@settings(derandomize=True, max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=traces())
def test_invariants_on_random_traces(student, case):
    """token and block budgets respected, every request finishes once with exactly its length"""
    trace, num_blocks, max_num_seqs, budget = case
    requests, stats, violations = run_student(student, POLICY, trace, num_blocks=num_blocks, block_size=8,
                                              max_num_seqs=max_num_seqs, max_num_batched_tokens=budget)
    check_invariants(requests, stats, violations, num_blocks, max_num_seqs, budget)


@pytest.mark.points(2)
def test_lower_p99_tpot_at_equal_throughput(student):
    """lower p99 TPOT than (reference) continuous batching at equal throughput, long prompts"""
    trace = make_trace(150, 8, seed=52, prompt_median=1800, prompt_sigma=0.7, output_median=120,
                       prompt_max=8000)
    setup = dict(num_blocks=20000, max_num_seqs=64)
    requests, stats, violations = run_student(student, POLICY, trace, max_num_batched_tokens=512, **setup)
    check_invariants(requests, stats, violations, 20000, 64, 512)
    mine = summarize(requests)
    plain = summarize(run_reference(RefContinuous, trace, **setup))
    assert mine["tpot_p99_s"] < 0.9 * plain["tpot_p99_s"], (
        f"p99 TPOT {mine['tpot_p99_s'] * 1e3:.2f} ms vs {plain['tpot_p99_s'] * 1e3:.2f} ms without "
        f"chunking: schedule the decodes first and cap prefill chunks at the budget left")
    assert mine["throughput_tok_s"] >= 0.95 * plain["throughput_tok_s"], (
        f"throughput {mine['throughput_tok_s']:.0f} tok/s fell below 95% of continuous batching's "
        f"{plain['throughput_tok_s']:.0f}: fill the budget left after decodes with prefill chunks")


@pytest.mark.points(2)
def test_goodput_near_the_reference(student):
    """goodput at least 90% of the reference chunked policy's under a TPOT SLO"""
    trace = make_trace(200, 10, seed=61, prompt_median=1200, prompt_sigma=0.8, output_median=150,
                       prompt_max=8000)
    setup = dict(num_blocks=6000, max_num_seqs=48, max_num_batched_tokens=768)
    requests, _, violations = run_student(student, POLICY, trace, **setup)
    assert not violations, violations[0]
    mine = summarize(requests, 1.0, 0.012)["goodput_rps"]
    ref = summarize(run_reference(RefChunked, trace, **setup), 1.0, 0.012)["goodput_rps"]
    assert mine >= 0.9 * ref, f"goodput {mine:.2f} req/s, below 90% of the reference's {ref:.2f}"
