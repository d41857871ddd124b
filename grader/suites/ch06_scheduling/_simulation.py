"""Shared by the chapter 6 suites: run a student's policy in the worker, the reference
(the `reference` fixture: the source notebook's own solution) here, and check the serving
contract on the result.

What a student's run is graded on comes from this process only. The worker runs the
policy and sends back its decisions (`llmopt.replay.record`); the judge replays them in
its own simulator (`llmopt.replay.replay`), which checks every rule and computes every
time. Code in the worker can rewrite llmopt's simulator, cost model or results there, and
all that reaches the judge is still a list of decisions, measured here."""

from concurrent.futures import ThreadPoolExecutor

from hypothesis import strategies as st

from course_config import THRESHOLDS
from llmopt.metrics import summarize
from llmopt.replay import replay
from llmopt.simulator import SchedulingError, simulate, simulate_disaggregated
from llmopt.workload import Request


@st.composite
def random_traces(draw, max_requests, max_prompt, max_output, gaps, spare_blocks):
    """(trace, num_blocks, max_num_seqs): arrivals spaced by `gaps`, a pool that always
    holds the largest request (block size 8) plus up to `spare_blocks` more."""
    n = draw(st.integers(2, max_requests))
    gap = draw(st.lists(st.sampled_from(gaps), min_size=n, max_size=n))
    prompts = draw(st.lists(st.integers(1, max_prompt), min_size=n, max_size=n))
    outputs = draw(st.lists(st.integers(1, max_output), min_size=n, max_size=n))
    t, trace = 0.0, []
    for i in range(n):
        t += gap[i]
        trace.append(Request(i, round(t, 6), prompts[i], outputs[i]))
    biggest = max(-(-(p + o) // 8) for p, o in zip(prompts, outputs))
    return trace, draw(st.integers(biggest + 1, biggest + spare_blocks)), draw(st.integers(1, 8))


def run_student(student, policy, trace, disaggregated=False, meanwhile=None, **kwargs):
    """(requests, step_stats, violations) of the student's policy class on `trace`: its
    decisions recorded in the worker, replayed and measured here.

    `meanwhile`, a function of nothing (the reference's run on the same trace, say), runs
    here while the worker records, and its value comes fourth. The replay added a
    simulation to the judge's share of each test; run beside the worker's, on the core
    the judge would otherwise leave idle waiting, the judge's own runs cost no wall time."""
    record = student.library("llmopt.replay:record")
    args = ([r.to_dict() for r in trace], getattr(student, policy))
    try:
        if meanwhile is None:
            log = record(*args, disaggregated=disaggregated, **kwargs)
        else:
            with ThreadPoolExecutor(1) as waiter:  # the only thread that talks to the worker
                pending = waiter.submit(record, *args, disaggregated=disaggregated, **kwargs)
                beside = meanwhile()
                log = pending.result()  # the worker's exception, if any, as it was raised
        result = replay(trace, log, disaggregated=disaggregated, **kwargs)
    except SchedulingError as stopped:  # raised in the worker's run or in the replay
        raise AssertionError(f"the simulator stopped your {policy}: {stopped}") from None
    measured = result.requests(), result.step_stats(), result.violations
    return measured if meanwhile is None else (*measured, beside)


def run_reference(policy_cls, trace, disaggregated=False, **kwargs):
    result = (simulate_disaggregated if disaggregated else simulate)(trace, policy_cls, **kwargs)
    return result.requests()


def check_goodput_near_reference(student, policy, reference_cls, trace, slo, disaggregated=False, **setup):
    """The student's SLO attainment under `slo` = (ttft_s, tpot_s) is at least the
    threshold's share of the reference policy's on the same trace and setup: on one trace
    at one rate, the share of requests served within the SLO is what goodput (the highest
    rate at 90 % attainment, `llmopt.metrics.goodput`) is made of, at a fraction of the
    cost of a bisection over rates."""
    minimum = THRESHOLDS["ch06_scheduling/goodput_vs_reference"].minimum
    requests, _, violations, ref_requests = run_student(
        student, policy, trace, disaggregated,
        meanwhile=lambda: run_reference(reference_cls, trace, disaggregated, **setup), **setup)
    assert not violations, violations[0]
    mine = summarize(requests, *slo)["slo_attainment"]
    ref = summarize(ref_requests, *slo)["slo_attainment"]
    assert mine >= minimum * ref, (f"{mine:.1%} of requests met the SLO, below {minimum:.0%} of the "
                                   f"reference's {ref:.1%}")


def check_invariants(requests, stats, violations, num_blocks, max_num_seqs, token_budget=None):
    assert not violations, f"your scheduler broke the serving contract: {violations[0]}"
    for r in requests:
        assert r["finish_s"] is not None, f"request {r['request_id']} never finished"
        assert r["tokens_emitted"] == r["output_len"], (
            f"request {r['request_id']} emitted {r['tokens_emitted']} tokens, expected exactly "
            f"{r['output_len']}")
    assert max(stats["blocks_used"]) <= num_blocks, (
        f"{max(stats['blocks_used'])} KV blocks held in one step, over the pool of {num_blocks}")
    assert max(stats["num_seqs"]) <= max_num_seqs, (
        f"{max(stats['num_seqs'])} sequences in one step, over max_num_seqs={max_num_seqs}")
    assert max(stats["leaked_blocks"]) == 0, "a preempted sequence kept its KV blocks: free them"
    if token_budget is not None:
        assert max(stats["num_tokens"]) <= token_budget, (
            f"a step ran {max(stats['num_tokens'])} tokens, over the budget of {token_budget}")
