import pytest
from hypothesis import HealthCheck, given, settings
from _simulation import check_goodput_near_reference, check_invariants, random_traces, run_reference, run_student

from course_config import THRESHOLDS
from llmopt.metrics import summarize
from llmopt.simulator import StaticBatchingScheduler, simulate
from llmopt.workload import make_trace

POLICY = "ContinuousBatchingScheduler"
MIN_SPEEDUP = THRESHOLDS["ch06_scheduling/continuous_vs_static_throughput"].minimum


@pytest.mark.points(2.5)
@pytest.mark.timeout(25)
@settings(derandomize=True, max_examples=12, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(case=random_traces(24, 120, 80, [0.0, 0.0, 0.001, 0.01, 0.05], 60))
def test_invariants_on_random_traces(student, case):
    """budgets respected, every request finishes once with exactly its length, no leaks"""
    trace, num_blocks, max_num_seqs = case
    requests, stats, violations = run_student(student, POLICY, trace, num_blocks=num_blocks,
                                              block_size=8, max_num_seqs=max_num_seqs)
    check_invariants(requests, stats, violations, num_blocks, max_num_seqs)


@pytest.mark.points(1)
def test_preempted_requests_resume_unchanged(student):
    """under memory pressure requests are preempted, resumed, and still emit exactly their length"""
    trace = make_trace(60, 80, seed=21, prompt_median=80, output_median=80, output_sigma=0.7)
    requests, stats, violations = run_student(student, POLICY, trace, num_blocks=90, max_num_seqs=24)
    check_invariants(requests, stats, violations, 90, 24)
    preempted = [r for r in requests if r["num_preemptions"]]
    assert preempted, "90 blocks cannot hold this trace at once: your scheduler never preempted"


@pytest.mark.points(1)
def test_admission_is_first_come_first_served(student):
    """with memory to spare, no request gets its first token before an earlier arrival"""
    trace = make_trace(80, 60, seed=4, arrivals="bursty", burst_size=20, prompt_median=120,
                       output_median=60)
    requests, _, violations = run_student(student, POLICY, trace, num_blocks=5000, max_num_seqs=8)
    assert not violations, violations[0]
    order = sorted(requests, key=lambda r: (r["arrival_s"], r["request_id"]))
    for earlier, later in zip(order, order[1:]):
        assert later["first_token_s"] >= earlier["first_token_s"], (
            f"request {later['request_id']} got its first token before request "
            f"{earlier['request_id']}, which arrived first: admit from the front of self.waiting")


@pytest.mark.points(1)
def test_no_request_waits_unboundedly(student, reference):
    """under steady memory pressure, the worst wait stays close to the reference's"""
    trace = make_trace(150, 40, seed=5, prompt_median=300, output_median=300, output_sigma=0.6)
    setup = dict(num_blocks=400, max_num_seqs=32)
    requests, _, violations, ref_requests = run_student(
        student, POLICY, trace, meanwhile=lambda: run_reference(reference.ContinuousBatchingScheduler, trace, **setup),
        **setup)
    assert not violations, violations[0]
    worst = max(r["finish_s"] - r["arrival_s"] for r in requests)
    ref_worst = max(r["finish_s"] - r["arrival_s"] for r in ref_requests)
    most = max(r["num_preemptions"] for r in requests)
    ref_most = max(r["num_preemptions"] for r in ref_requests)
    assert most <= ref_most + 1, (
        f"one request was preempted {most} times (reference: {ref_most}): a preempted request "
        f"should go back to the FRONT of the queue, and the victim should be the newest admitted")
    assert worst <= 1.1 * ref_worst, (
        f"the slowest request took {worst:.1f} s end to end, the reference {ref_worst:.1f} s: "
        f"some request waits far longer than it should")


@pytest.mark.points(1.5)
def test_twice_the_throughput_of_static_batching(student):
    """at least 2x static batching's throughput on a bursty mixed-length trace"""
    trace = make_trace(250, 150, seed=31, arrivals="bursty", burst_size=60, prompt_median=180,
                       output_median=90, output_sigma=1.4)
    setup = dict(num_blocks=2500, max_num_seqs=32)
    requests, _, violations, static = run_student(
        student, POLICY, trace, meanwhile=lambda: summarize(simulate(trace, StaticBatchingScheduler, **setup).requests()),
        **setup)
    assert not violations, violations[0]
    mine = summarize(requests)
    ratio = mine["throughput_tok_s"] / static["throughput_tok_s"]
    assert ratio >= MIN_SPEEDUP, f"throughput {ratio:.2f}x static batching's; expected at least {MIN_SPEEDUP:g}x"


@pytest.mark.points(1)
def test_goodput_near_the_reference(student, reference):
    """SLO attainment at least 90% of the reference policy's on a Poisson trace"""
    trace = make_trace(250, 30, seed=41, prompt_median=400, output_median=150, prompt_max=4000)
    setup = dict(num_blocks=1200, max_num_seqs=48)
    check_goodput_near_reference(student, POLICY, reference.ContinuousBatchingScheduler, trace, (2.0, 0.02), **setup)
