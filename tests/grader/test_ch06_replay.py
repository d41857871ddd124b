"""Chapter 6 grades a scheduling policy on numbers measured in the judge, never on numbers
its own process reports.

The policy runs in the student's worker, where any code can rewrite llmopt's simulator,
cost model or results. So the suites take only the policy's decisions from there
(`llmopt.replay.record`) and replay them through the judge's simulator
(`llmopt.replay.replay`). These tests prove the three halves of that claim:

- an honest log replays to exactly the run the policy gets from `simulate` (times, steps,
  violations), so honest work loses nothing;
- a doctored log is either measured as what its decisions are worth or reported: over
  the pool, the token budget, max_num_seqs, leaked blocks, steps at another time, calls
  that never happened;
- a submission that patches llmopt in its own process gets no better verdict than its
  honest decisions deserve, while the same patch would have fooled a verdict computed in
  that process (so the forgery tested here is a real one).

The real-engine suite runs the serving loop in the judge the same way (the policy's
decisions replayed, each step's batch sent to the student's run_batch): the last tests
prove that loop serves what `serve_on_engine` serves, and that patching llmopt.serving in
the worker no longer passes a wrong run_batch.
"""

import copy
import json
import os
import subprocess
import sys
import textwrap
import types

import nbformat
import pytest

from course_config import ROOT, THRESHOLDS
from grader.notebook import student_cells
from llmopt.metrics import summarize
from llmopt.replay import (MAX_LOG_CHARS, DecisionLogError, batch_items, record, record_served, replay,
                           replay_served, run_batch_on)
from llmopt.serving import serve_on_engine
from llmopt.simulator import OutOfKVBlocks, SchedulingError, simulate, simulate_disaggregated
from llmopt.workload import make_trace

CHAPTER = "ch06_scheduling"
# The setup and scheduling cells: enough to build the policies, without torch's start-up.
POLICY_CELLS = ("setup", "continuous_batching_solution", "chunked_prefill_solution", "disaggregation_solution")
CONTROLS = ROOT / "grader" / "suites" / CHAPTER / "controls"

# An honest policy that serves one request at a time: correct, and slow.
ONE_AT_A_TIME = '''
class ContinuousBatchingScheduler(ContinuousBatchingScheduler):
    def admit(self, batch, now, token_budget=None):
        if self.running or not self.waiting:
            return
        seq = self.waiting[0]
        need = self.pool.blocks_needed(seq, seq.num_pending_tokens)
        if self.pool.can_allocate(need):
            self.pool.allocate(seq, need)
            self.running.append(self.waiting.popleft())
            batch.add(seq, seq.num_pending_tokens)
'''

# Forgeries a submission can run in its own process, next to that slow policy.
FORGERIES = {
    # every step costs a microsecond: goodput and throughput soar in that process
    "fast_clock": '''
import llmopt.simulator
llmopt.simulator.CostModel.step_time = lambda self, work: 1e-6
''',
    # results rewritten after the run: every request served at once
    "forged_results": '''
import llmopt.simulator
_honest = llmopt.simulator.SimulationResult.requests
def _requests(self):
    out = _honest(self)
    for r in out:
        r["first_token_s"] = r["arrival_s"] + 1e-3
        r["finish_s"] = r["first_token_s"] + 1e-4 * (r["output_len"] - 1)
    return out
llmopt.simulator.SimulationResult.requests = _requests
''',
    # aimed at the replay itself: the log's steps claimed to start earlier
    "shifted_log": '''
import json
import llmopt.replay
_honest = llmopt.replay.record
def _record(*args, **kwargs):
    log = json.loads(_honest(*args, **kwargs))
    for entries in log["instances"]:
        for kind, payload, ops in entries:
            if kind == "step":
                payload[0] *= 0.01
    return json.dumps(log)
llmopt.replay.record = _record
''',
}
FOOLS_ITS_OWN_PROCESS = ("fast_clock", "forged_results")  # a verdict computed there would pass

# The stand-in for the grading worker: the submission's cells in a separate interpreter,
# then whatever `llmopt.replay.record` is there by then (patched or not), and, to prove the
# forgery bites, the verdict that process would report if it were trusted.
WORKER_SIDE = textwrap.dedent('''
    import json, sys, types
    job = json.load(sys.stdin)
    student = types.ModuleType("student")
    sys.modules["student"] = student
    for source in job["cells"]:
        exec(compile(source, "submission", "exec"), student.__dict__)
    import llmopt.replay, llmopt.simulator
    policy = getattr(student, job["policy"])
    log = llmopt.replay.record(job["trace"], policy, **job["setup"])
    claimed = llmopt.simulator.simulate(job["trace"], policy, strict=False, **job["setup"])
    print(json.dumps({"log": log, "claimed": claimed.summary(*job["slo"])}))
''')


@pytest.fixture(scope="module")
def cells():
    nb = nbformat.read(ROOT / "source" / CHAPTER / f"{CHAPTER}.ipynb", as_version=4)
    return [c["source"] for c in student_cells(nb) if c["name"].strip("'") in POLICY_CELLS]


def policies(cells, extra: str = "") -> types.SimpleNamespace:
    namespace: dict = {"__name__": "policies"}
    for source in [*cells, extra]:
        exec(compile(source, "policies", "exec"), namespace)
    return types.SimpleNamespace(**namespace)


@pytest.fixture(scope="module")
def reference(cells):
    return policies(cells)


def run(trace, policy, disaggregated=False, **setup):
    return (simulate_disaggregated if disaggregated else simulate)(trace, policy, strict=False, **setup)


def same_run(a, b) -> None:
    assert a.requests() == b.requests()
    assert a.step_stats() == b.step_stats()
    assert a.violations == b.violations


# -- honest logs replay exactly ------------------------------------------------------------

PRESSED = make_trace(40, 60, seed=21, prompt_median=80, output_median=60, output_sigma=0.7)
LONG = make_trace(30, 10, seed=61, prompt_median=600, prompt_sigma=0.8, output_median=40, prompt_max=3000)
CASES = {  # policy, trace, setup: preemptions, chunks, KV transfers, two instances
    "continuous": ("ContinuousBatchingScheduler", PRESSED, dict(num_blocks=90, max_num_seqs=12)),
    "continuous-2": ("ContinuousBatchingScheduler", PRESSED, dict(num_blocks=60, max_num_seqs=8, instances=2)),
    "chunked": ("ChunkedPrefillScheduler", LONG, dict(num_blocks=400, max_num_seqs=16, max_num_batched_tokens=256)),
    "disaggregated": ("DecodeScheduler", LONG, dict(num_blocks=300, max_num_seqs=16, link_bytes_per_s=2e9,
                                                    disaggregated=True)),
}


@pytest.mark.parametrize("case", CASES)
def test_an_honest_log_replays_to_the_policy_run(reference, case):
    name, trace, setup = CASES[case]
    policy = getattr(reference, name)
    log = record([r.to_dict() for r in trace], policy, **setup)  # the worker's form of a trace
    same_run(replay(trace, log, **setup), run(trace, policy, **setup))


@pytest.mark.parametrize("control", ["preempt_without_freeing", "chunk_ignores_token_budget", "drops_preempted",
                                     "decode_before_kv_arrives", "lifo_admission", "preempted_to_back_of_queue"])
def test_a_rule_breaking_policy_replays_to_the_same_verdict(cells, control):
    """The same simulator checks the same decisions: where a direct run reports
    violations the replay reports the very same ones, and where it stops (a preempted
    request that never gets its blocks back, a dropped one) recording stops with it."""
    broken = policies(cells, (CONTROLS / f"{control}.py").read_text())
    name, trace, setup = {"chunk_ignores_token_budget": CASES["chunked"],
                          "decode_before_kv_arrives": CASES["disaggregated"]}.get(control, CASES["continuous"])
    policy = getattr(broken, name)
    try:
        direct = run(trace, policy, **setup)
    except SchedulingError as stopped:
        with pytest.raises(SchedulingError) as recording:
            record(trace, policy, **setup)
        assert str(recording.value) == str(stopped)
        return
    same_run(replay(trace, record(trace, policy, **setup), **setup), direct)
    assert direct.violations or control in ("lifo_admission", "preempted_to_back_of_queue")


# -- doctored logs are measured as they are, or reported ----------------------------------

def honest_log(reference, case="continuous"):
    name, trace, setup = CASES[case]
    return json.loads(record(trace, getattr(reference, name), **setup)), trace, setup


def steps(log, instance=0):
    return [e for e in log["instances"][instance] if e[0] == "step"]


def test_a_log_recorded_with_more_memory_overflows_the_real_pool(reference):
    log, trace, setup = honest_log(reference)
    with pytest.raises(OutOfKVBlocks):
        replay(trace, log, **{**setup, "num_blocks": 30})


def test_a_log_over_max_num_seqs_or_the_token_budget_is_a_violation(reference):
    log, trace, setup = honest_log(reference)
    result = replay(trace, log, **{**setup, "max_num_seqs": 2, "max_num_batched_tokens": 8})
    assert any("max_num_seqs=2" in v for v in result.violations)
    assert any("max_num_batched_tokens=8" in v for v in result.violations)


def test_a_preemption_that_keeps_its_blocks_is_a_leak(reference):
    """The victim's blocks are given back one call late. On the pool the log was made
    for, the blocks the preemption was for are then missing at once; on a larger one the
    step is measured with them still held."""
    log, trace, setup = honest_log(reference)
    calls = log["instances"][0]
    at = next(i for i, (kind, payload, _) in enumerate(calls) if kind == "step" and payload[2])
    victim = calls[at][1][2][0]
    ops = calls[at][2]
    late = [i for i in range(0, len(ops), 2) if ops[i:i + 2] == [victim, -1]]
    assert late, "the reference frees its victim while preempting"
    del ops[late[0]:late[0] + 2]
    calls[at + 1][2][:0] = [victim, -1]
    with pytest.raises(OutOfKVBlocks):
        replay(trace, log, **setup)
    result = replay(trace, log, **{**setup, "num_blocks": 2 * setup["num_blocks"]})
    assert any("still hold" in v for v in result.violations)
    assert max(result.step_stats()["leaked_blocks"]) > 0


def test_a_decode_scheduled_before_its_kv_lands_is_a_violation(reference, cells):
    """The forged log says "decode at once": the replay's clock, not the log's, decides
    whether the KV was there."""
    name, trace, setup = CASES["disaggregated"]
    eager = policies(cells, (CONTROLS / "decode_before_kv_arrives.py").read_text())
    log = record(trace, eager.DecodeScheduler, **setup)
    result = replay(trace, log, **setup)
    assert any("before its KV" in v for v in result.violations)


@pytest.mark.parametrize("doctor, message", [
    (lambda log: steps(log)[5][1].__setitem__(0, steps(log)[5][1][0] * 0.5), "starts at"),
    (lambda log: log["instances"][0].pop(10), "log has something else"),
    (lambda log: log["instances"][0].append(["work", True, []]), "more calls"),
    (lambda log: log["instances"][0].__delitem__(slice(len(log["instances"][0]) // 2, None)), "log ended"),
    (lambda log: log["instances"].append([]), "instances"),
    (lambda log: steps(log)[0][1][1].__setitem__(0, 39), "never sent"),  # before it arrived
    (lambda log: steps(log)[0][1][1].__setitem__(1, 1.5), "not an int"),
    (lambda log: steps(log)[0][1][1].__setitem__(1, True), "not an int"),
    (lambda log: steps(log)[0].__setitem__(2, ["0", 1]), "malformed pool operation"),
    (lambda log: steps(log)[0].__setitem__(2, [0, -5]), "malformed pool operation"),
    (lambda log: log.__setitem__("instances", "everything went well"), "list of instance logs"),
])
def test_a_log_that_does_not_fit_the_run_is_reported(reference, doctor, message):
    log, trace, setup = honest_log(reference)
    doctor(log)
    with pytest.raises(DecisionLogError, match=message):
        replay(trace, log, **setup)


def test_a_step_that_runs_a_request_twice_or_too_far_stops_the_replay(reference):
    """Rules the simulator enforces on any run hold in a replay too."""
    log, trace, setup = honest_log(reference)
    twice = copy.deepcopy(log)
    scheduled = steps(twice)[0][1][1]
    scheduled += scheduled[:2]
    with pytest.raises(SchedulingError, match="scheduled twice"):
        replay(trace, twice, **setup)
    steps(log)[0][1][1][1] += 10_000  # more tokens than it has: it would emit a token it never computed
    with pytest.raises(SchedulingError, match="scheduled for"):
        replay(trace, log, **setup)


def test_text_that_is_not_a_log_is_reported():
    with pytest.raises(DecisionLogError, match="not JSON"):
        replay(PRESSED, "[" * 100_000, num_blocks=90)
    with pytest.raises(DecisionLogError):
        replay(PRESSED, 42, num_blocks=90)
    with pytest.raises(DecisionLogError, match="characters"):
        replay(PRESSED, " " * (MAX_LOG_CHARS + 1), num_blocks=90)


# -- a submission that patches llmopt in its own process gains nothing --------------------

def worker_side(cells, extra, trace, setup, slo):
    job = {"cells": [*cells, extra], "policy": "ContinuousBatchingScheduler", "trace": [r.to_dict() for r in trace],
           "setup": setup, "slo": slo}
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, "-c", WORKER_SIDE], input=json.dumps(job), capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.parametrize("forgery", FORGERIES)
def test_patching_llmopt_in_the_worker_earns_no_better_verdict(cells, reference, forgery):
    """A slow policy plus a forgery: the number its own process reports would pass the
    goodput check against the reference; the replayed one is the slow policy's honest
    goodput, or the log is refused."""
    trace = make_trace(60, 30, seed=41, prompt_median=400, output_median=60, prompt_max=4000)
    setup, slo = dict(num_blocks=1200, max_num_seqs=48), (2.0, 0.02)
    minimum = THRESHOLDS[f"{CHAPTER}/goodput_vs_reference"].minimum
    best = summarize(run(trace, reference.ContinuousBatchingScheduler, **setup).requests(), *slo)["slo_attainment"]
    slow = policies(cells, ONE_AT_A_TIME).ContinuousBatchingScheduler
    honest = summarize(run(trace, slow, **setup).requests(), *slo)["slo_attainment"]
    assert honest < minimum * best, "the slow policy should fail the goodput check on its own"

    got = worker_side(cells, ONE_AT_A_TIME + FORGERIES[forgery], trace, setup, slo)
    if forgery in FOOLS_ITS_OWN_PROCESS:
        assert got["claimed"]["slo_attainment"] >= minimum * best, "this forgery should fool its own process"
    try:
        replayed = replay(trace, got["log"], **setup)
    except DecisionLogError:
        return  # refused: the suites fail the test with the reason
    assert not replayed.violations
    assert summarize(replayed.requests(), *slo)["slo_attainment"] == honest


def test_a_forging_submission_through_the_grader_scores_nothing():
    """End to end, through the grader and its worker: the slow policy with a fast clock
    in its process. Every simulated test's log is refused (its steps are not at the
    judge's times), so it scores nothing, which is no more than the slow policy earns."""
    from grader.demo import with_code
    from grader.judge import run_suites

    nb = nbformat.read(ROOT / "source" / CHAPTER / f"{CHAPTER}.ipynb", as_version=4)
    suite = f"{CHAPTER}/continuous_batching"
    forged = with_code(nb, ONE_AT_A_TIME + FORGERIES["fast_clock"])
    result = run_suites(student_cells(forged), [suite], chapter=CHAPTER)[suite]
    assert result.tests and result.earned == 0, [(t.name, t.status) for t in result.tests]
    assert all("do not replay" in t.message for t in result.tests), [t.message for t in result.tests]


# -- the real engine's serving loop, run in the judge ---------------------------------------

def toy_run_batch(engine, batch, kv: dict):
    """A stand-in model over a paged store: a step writes its tokens' ids into their slots
    (`kv`: slot -> id) and each next token is a function of the whole prefix, read back
    through the block table. So a token comes out right only if every step wrote where
    the pool's block tables say and the prefix hits found what earlier requests wrote."""
    size, out = 4, {}
    for seq, n in batch.scheduled:
        start, end = seq.compute_range(n)
        for p in range(start, end):
            kv[seq.block_table[p // size] * size + p % size] = seq.token_ids[p]
        if end == seq.num_tokens:
            prefix = [kv[seq.block_table[p // size] * size + p % size] for p in range(end)]
            out[seq.request_id] = sum(i * t for i, t in enumerate(prefix)) % 997
    return out


def toy_alone(prompt, n):
    ids = list(prompt)
    for _ in range(n):
        ids.append(sum(i * t for i, t in enumerate(ids)) % 997)
    return ids[len(prompt):]


SERVED = {  # as test_real_engine serves them
    "preempting": ("ContinuousBatchingScheduler", dict(arrival_steps=[0, 0, 1, 2, 4, 6], num_blocks=18, block_size=4,
                                                       max_num_seqs=4)),
    "chunked": ("ChunkedPrefillScheduler", dict(num_blocks=64, block_size=4, max_num_seqs=4, max_num_batched_tokens=8)),
}
SYSTEM = [(5 * j) % 300 + 10 for j in range(20)]  # a shared system prompt: prefix hits
PROMPTS = [SYSTEM + [(7 * i + 3 * j) % 50 for j in range(n)] for i, n in enumerate([12, 8, 15, 10, 6, 13])]
LENGTHS = [20, 12, 18, 16, 8, 14]


@pytest.mark.parametrize("case", SERVED)
def test_the_judges_serving_loop_serves_what_serve_on_engine_serves(reference, case):
    """Decisions recorded without a model, replayed with each step's batch rebuilt from
    data (`batch_items` -> `run_batch_on`): same tokens, same steps, same preemptions."""
    name, setup = SERVED[case]
    policy = getattr(reference, name)
    direct_store, worker_store = {}, {}
    direct = serve_on_engine(None, PROMPTS, LENGTHS, policy, lambda e, b, kv: toy_run_batch(e, b, direct_store),
                             **setup)
    log = record_served(PROMPTS, LENGTHS, policy, **setup)
    served = replay_served(PROMPTS, LENGTHS, log,
                           lambda _, b, kv: run_batch_on(None, toy_run_batch, batch_items(b), worker_store), **setup)
    for key in ("tokens", "preemptions", "prefix_hit_tokens", "computed_tokens"):
        assert served[key] == direct[key], key
    assert [{**s, "seconds": 0} for s in served["steps"]] == [{**s, "seconds": 0} for s in direct["steps"]]
    assert served["tokens"] == {i: toy_alone(prompt, n) for i, (prompt, n) in enumerate(zip(PROMPTS, LENGTHS))}
    assert sum(served["prefix_hit_tokens"].values()) > 0
    if case == "preempting":
        assert sum(served["preemptions"].values()) > 0


def test_a_serving_log_that_breaks_the_budget_stops_the_loop(reference):
    name, setup = SERVED["chunked"]
    log = record_served(PROMPTS, LENGTHS, getattr(reference, name), **setup)
    with pytest.raises(SchedulingError, match="token budget"):
        replay_served(PROMPTS, LENGTHS, log, toy_run_batch, **{**setup, "max_num_batched_tokens": 4})


def test_patching_the_serving_loop_in_the_worker_no_longer_passes_a_wrong_run_batch():
    """End to end: a run_batch that ignores the block tables, and llmopt.serving.serve_on_engine
    replaced in the worker by one that returns each request generated alone (what the
    judge compares with). Before the loop ran in the judge such a patch scored 6 of 6."""
    from grader.demo import with_code
    from grader.judge import run_suites

    patch = textwrap.dedent('''
        import llmopt.serving
        def _serve(engine, prompts, output_lens, scheduler_cls, run_batch, **kwargs):
            tokens = {i: llmopt.serving.generate_alone(engine, p, n)[0]
                      for i, (p, n) in enumerate(zip(prompts, output_lens))}
            return {"tokens": tokens, "steps": [], "preemptions": {i: 1 for i in tokens}}
        llmopt.serving.serve_on_engine = _serve
    ''')
    nb = nbformat.read(ROOT / "source" / CHAPTER / f"{CHAPTER}.ipynb", as_version=4)
    forged = with_code(nb, (CONTROLS / "ignores_block_tables.py").read_text() + patch)
    suite = f"{CHAPTER}/real_engine"
    result = run_suites(student_cells(forged), [suite], chapter=CHAPTER)[suite]
    assert result.tests and result.earned == 0, [(t.name, t.status, t.message) for t in result.tests]
