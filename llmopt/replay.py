"""Record a scheduling policy's decisions in one process, replay them in another.

Why this exists: a grader cannot trust numbers computed where the graded code runs. A
policy class lives in the student's worker process, and so does every module it can
reach: code there can rewrite `simulate`, the cost model or `SimulationResult` and
report any goodput it likes. What the policy legitimately produces is only its
*decisions*: which sequences run how many tokens each step, which are preempted, and what
it takes from and gives back to the KV-block pool. So:

- `record` runs the simulator around the policy (in the worker) and returns those
  decisions as plain data, one log per instance the policy drives: every call the
  simulator made on the scheduler (add_request, has_work, schedule, on_finished), in
  order, with the pool operations made during it and, for `schedule`, the batch.
- `replay` (in the judge) runs the trusted `simulate` / `simulate_disaggregated` on the
  same trace and setup with a scheduler that answers each call from the log: it performs
  the logged pool operations on a real pool and returns the logged batch. The simulator
  then checks every rule itself (arrivals, KV arrival, blocks held, max_num_seqs, token
  budget, leaked blocks, exact lengths) and computes every time.

Nothing in the log is believed except as a decision. An honest log replays to exactly
the run `simulate` gives the policy (same times, same steps, same violations); a log
from a doctored simulator, or edited by hand, either replays to the honest outcome of
the decisions it holds, breaks a rule the replay reports, or stops with
`DecisionLogError` where it no longer fits the run (a call the run did not make, a step
at another time, a request this instance never received).

Log format (JSON text: one string crosses a process wall in one piece, where nested
lists would be walked item by item on both sides):
    {"instances": [[entry, ...], ...]}   one list per instance run by the policy, in
                                          construction order (decode instances only when
                                          disaggregated: the prefill side is the
                                          library's own and runs in the replay)
    entry = [kind, payload, ops]
      kind "add" | "finish": payload = request_id
      kind "work":           payload = has_work()'s answer (bool)
      kind "step":           payload = [now, [id, tokens, id, tokens, ...], [preempted ids]]
      ops = [id, k, id, k, ...]: k >= 1 allocated k blocks to request id, k == -1 freed them

`record_served` / `replay_served` do the same for `llmopt.serving.serve_on_engine`, the
real course model's serving loop (see the section at the end).
"""

from __future__ import annotations

import json

from llmopt.simulator import (Batch, KVBlockPool, Scheduler, SchedulingError, Sequence, simulate,
                              simulate_disaggregated)
from llmopt.workload import as_requests

FREE = -1  # the op code of pool.free in a log
# The course's largest traces log under 1 MB; parsed JSON takes ~10x its text in memory,
# so a cap far above any honest log keeps a forged one from exhausting the replaying process.
MAX_LOG_CHARS = 64 << 20


class DecisionLogError(SchedulingError):
    """A decision log does not fit the run it claims to come from."""


# ---------------------------------------------------------------------------------------
# Recording (runs wherever the policy runs)
# ---------------------------------------------------------------------------------------

class _RecordingPool(KVBlockPool):
    """A KV pool that notes every allocation and free, in order, for the current call."""

    def __init__(self, num_blocks: int, block_size: int):
        super().__init__(num_blocks, block_size)
        self.ops: list = []

    def allocate(self, seq, num_blocks: int) -> None:
        super().allocate(seq, num_blocks)  # a refused allocation raises and changes nothing
        if num_blocks:
            self.ops += (seq.request_id, num_blocks)

    def free(self, seq) -> None:
        super().free(seq)
        self.ops += (seq.request_id, FREE)

    def take_ops(self) -> list:
        ops, self.ops = self.ops, []
        return ops


class _Recorder:
    """Stands where the simulator expects a scheduler, forwards every call to the policy and
    logs it. Composition, not a subclass: calls the policy makes on itself (a schedule()
    that calls self.add_request) are not calls of the simulator, and must not be logged."""

    def __init__(self, policy_cls, pool: KVBlockPool, limits):
        self.pool = _RecordingPool(pool.num_blocks, pool.block_size)
        self.limits = limits
        self.policy = policy_cls(self.pool, limits)
        self.entries: list = []

    def _log(self, kind: str, payload) -> None:
        # Ops made before this call ended (in the policy's __init__ too) belong to it:
        # the simulator looks at the pool only once a call has returned.
        self.entries.append([kind, payload, self.pool.take_ops()])

    def add_request(self, seq: Sequence) -> None:
        self.policy.add_request(seq)
        self._log("add", seq.request_id)

    def has_work(self) -> bool:
        answer = bool(self.policy.has_work())
        self._log("work", answer)
        return answer

    def schedule(self, now: float):
        batch = self.policy.schedule(now)
        try:
            payload = [now, [x for seq, n in batch.scheduled for x in (seq.request_id, n)],
                       [seq.request_id for seq in batch.preempted]]
        except Exception:
            return batch  # not a well-formed Batch: the simulator's own check stops the run
        self._log("step", payload)
        return batch

    def on_finished(self, seq: Sequence) -> None:
        self.policy.on_finished(seq)
        self._log("finish", seq.request_id)


class _Recorders(list):
    """Builds a recording scheduler wherever a run builds the policy, and keeps them in
    construction order (the order a replay builds its instances in)."""

    def __init__(self, policy_cls):
        super().__init__()
        self.policy_cls = policy_cls

    def __call__(self, pool: KVBlockPool, limits) -> _Recorder:
        self.append(_Recorder(self.policy_cls, pool, limits))
        return self[-1]

    def log(self) -> str:
        return json.dumps({"instances": [r.entries for r in self]}, separators=(",", ":"))


def record(trace, policy_cls, *, disaggregated: bool = False, **setup) -> str:
    """Run `policy_cls` on `trace` under `simulate` (or `simulate_disaggregated`, where the
    policy drives the decode instances) with `setup`, and return its decision log (JSON).

    The run is non-strict, as the replay is: a broken rule is the replay's to report, and
    stopping here at the first one would hide the rest of the run from it."""
    recorders = _Recorders(policy_cls)
    (simulate_disaggregated if disaggregated else simulate)(trace, recorders, strict=False, **setup)
    return recorders.log()


# ---------------------------------------------------------------------------------------
# Replaying (runs in the trusted process)
# ---------------------------------------------------------------------------------------

def _show(x) -> str:
    return repr(x)[:60]  # a forged field may be a megabyte of list: quote only its start


def _is_int(x) -> bool:
    return type(x) is int  # exactly: not a bool, nor anything else a forged log may carry


class _Replayer(Scheduler):
    """Answers the simulator's calls from one instance's log. Every field is type-checked
    before use: the log is whatever the other process chose to send."""

    def __init__(self, pool: KVBlockPool, limits, entries, index: int):
        super().__init__(KVBlockPool(pool.num_blocks, pool.block_size), limits)
        if type(entries) is not list:
            raise DecisionLogError(f"instance {index}'s decision log is not a list")
        self.entries, self.index, self.next = entries, index, 0
        self.seqs: dict[int, Sequence] = {}  # the requests this instance was given

    def _fail(self, why: str) -> DecisionLogError:
        return DecisionLogError(
            f"the recorded decisions do not replay (instance {self.index}, call {self.next}): {why}. "
            f"Only your policy's decisions are graded, replayed in the grader's own simulator: "
            f"code that changes llmopt's simulator in your process changes nothing but this")

    def _take(self, kind: str):
        if self.next >= len(self.entries):
            raise self._fail(f"the log ended where the run makes a {kind} call")
        entry = self.entries[self.next]
        if type(entry) is not list or len(entry) != 3 or type(entry[0]) is not str or entry[0] != kind:
            raise self._fail(f"the run makes a {kind} call here, the log has something else")
        self.next += 1
        self._apply(entry[2])
        return entry[1]

    def _apply(self, ops) -> None:
        if type(ops) is not list or len(ops) % 2:
            raise self._fail("malformed pool operations")
        for i in range(0, len(ops), 2):
            rid, k = ops[i], ops[i + 1]
            if not (_is_int(rid) and _is_int(k)) or not (k >= 1 or k == FREE):
                raise self._fail(f"malformed pool operation {_show(rid)}, {_show(k)}")
            seq = self._seq(rid)  # the pool names blocks by the sequence's prompt
            if k == FREE:
                self.pool.free(seq)
            else:
                self.pool.allocate(seq, k)  # past the pool: OutOfKVBlocks, as in any run

    def _seq(self, rid) -> Sequence:
        if not _is_int(rid) or rid not in self.seqs:
            raise self._fail(f"request {_show(rid)} was never sent to this instance")
        return self.seqs[rid]

    def add_request(self, seq: Sequence) -> None:
        self.seqs[seq.request_id] = seq  # first: the call's pool operations may name it
        if self._take("add") != seq.request_id:
            raise self._fail(f"request {seq.request_id} arrives here, the log has another")

    def has_work(self) -> bool:
        answer = self._take("work")
        if type(answer) is not bool:
            raise self._fail("has_work's answer is not a bool")
        return answer

    def on_finished(self, seq: Sequence) -> None:
        if self._take("finish") != seq.request_id:
            raise self._fail(f"request {seq.request_id} finishes here, the log has another")

    def schedule(self, now: float) -> Batch:
        payload = self._take("step")
        if type(payload) is not list or len(payload) != 3:
            raise self._fail("malformed step")
        when, scheduled, preempted = payload
        # The clock is the judge's: a step logged at another time came from another
        # simulation (a changed cost model, say), whose decisions may not fit this one.
        if type(when) not in (int, float) or when != now:
            raise self._fail(f"this step starts at t={now!r} s, the log's at t={_show(when)} s")
        if type(scheduled) is not list or len(scheduled) % 2 or type(preempted) is not list:
            raise self._fail("malformed step")
        if len(preempted) > len(self.seqs):  # the simulator's own checks of a step are
            # linear in what it schedules (a repeat stops them) but not in what it preempts
            raise self._fail("a step preempts more requests than this instance holds")
        batch = Batch()
        for i in range(0, len(scheduled), 2):
            n = scheduled[i + 1]
            if not _is_int(n):
                raise self._fail(f"a token count {_show(n)} is not an int")
            batch.add(self._seq(scheduled[i]), n)
        batch.preempted = [self._seq(rid) for rid in preempted]
        return batch

    def check_consumed(self) -> None:
        if self.next != len(self.entries):
            raise self._fail(f"the run is over but the log holds {len(self.entries) - self.next} more calls")


class _Replayers(list):
    """Builds a replaying scheduler wherever a run builds the policy, the k-th from the
    log's k-th instance; `check` after the run: every instance built, every call used."""

    def __init__(self, log):
        super().__init__()
        if type(log) is str:
            if len(log) > MAX_LOG_CHARS:
                raise DecisionLogError(f"the decision log has {len(log)} characters, over {MAX_LOG_CHARS}")
            try:
                log = json.loads(log)
            except (ValueError, RecursionError) as exc:
                raise DecisionLogError(f"the decision log is not JSON: {str(exc)[:200]}") from None
        if type(log) is not dict or type(log.get("instances")) is not list:
            raise DecisionLogError("a decision log is a dict with a list of instance logs")
        self.logs = log["instances"]

    def __call__(self, pool: KVBlockPool, limits) -> _Replayer:
        if len(self) == len(self.logs):
            raise DecisionLogError(f"the run has more instances than the log's {len(self.logs)}")
        self.append(_Replayer(pool, limits, self.logs[len(self)], len(self)))
        return self[-1]

    def check(self) -> None:
        if len(self) != len(self.logs):
            raise DecisionLogError(f"the log has {len(self.logs)} instances, the run {len(self)}")
        for r in self:
            r.check_consumed()


def replay(trace, log, *, disaggregated: bool = False, **setup):
    """The `SimulationResult` of replaying `log` (from `record`) on `trace` with `setup`,
    in this process's simulator, non-strict: broken rules land in `result.violations`;
    a log that does not fit the run raises `DecisionLogError`."""
    replayers = _Replayers(log)
    run = simulate_disaggregated if disaggregated else simulate
    result = run(as_requests(trace), replayers, strict=False, **setup)
    replayers.check()
    return result


# ---------------------------------------------------------------------------------------
# The same for the real engine (llmopt.serving.serve_on_engine)
# ---------------------------------------------------------------------------------------
# There the policy's decisions come with a second piece of the student's code, run_batch,
# which computes each step's tokens on the model through a paged KV store. The replaying
# process runs the serving loop itself: the policy's decisions from the log, its own KV
# pool (block tables, prefix hits), and each step's batch rebuilt from data in the
# policy's process and handed to its run_batch with the store kept there (`run_batch_on`).
# So the tokens a grader checks are the ones run_batch returned for batches and block
# tables the replay chose, and the preemptions, chunks and prefix hits it counts are the
# replay's.

def _stand_in_tokens(engine, batch, kv) -> dict:
    """A token for every sequence a step completes. Decisions depend on token counts,
    never on their values, so recording them needs no model."""
    return {seq.request_id: 0 for seq, n in batch.scheduled if seq.num_computed_tokens + n == seq.num_tokens}


def record_served(prompts, output_lens, policy_cls, **setup) -> str:
    """`record` for `serve_on_engine(engine, prompts, output_lens, policy_cls, ...)`:
    the policy's decision log for serving `prompts`, without running a model."""
    from llmopt.serving import serve_on_engine

    recorders = _Recorders(policy_cls)
    serve_on_engine(None, prompts, output_lens, recorders, _stand_in_tokens, **setup)
    return recorders.log()


def replay_served(prompts, output_lens, log, run_batch, **setup) -> dict:
    """`serve_on_engine`'s result, run here on the decisions in `log` (from
    `record_served`), each step's tokens from `run_batch(None, batch, None)`. Strict, as
    serve_on_engine is: a broken rule raises `SchedulingError`."""
    from llmopt.serving import serve_on_engine

    replayers = _Replayers(log)
    served = serve_on_engine(None, prompts, output_lens, replayers, run_batch, **setup)
    replayers.check()
    return served


HIDDEN_TOKEN = -1  # what batch_items sends for a token whose KV is already in the cache


def batch_items(batch: Batch) -> list[dict]:
    """One step's batch as data: each sequence's state, block table and tokens this step.

    Token ids below the first token the step computes (`Sequence.compute_range`) are sent
    as HIDDEN_TOKEN: their KV is in the cache already (computed by an earlier step, or a
    prefix-cache hit), so a run_batch that reads them recomputes what it must not."""
    items = []
    for seq, n in batch.scheduled:
        start, _ = seq.compute_range(n)
        items.append({"request_id": seq.request_id, "arrival_s": seq.arrival_s, "prompt_len": seq.prompt_len,
                      "output_len": seq.output_len,
                      "token_ids": [HIDDEN_TOKEN] * start + list(seq.token_ids[start:]),
                      "num_computed_tokens": seq.num_computed_tokens, "num_cached_tokens": seq.num_cached_tokens,
                      "block_table": list(seq.block_table), "num_generated": seq.num_generated,
                      "num_preemptions": seq.num_preemptions, "tokens": n})
    return items


def run_batch_on(engine, run_batch, items: list[dict], kv=None):
    """Rebuild a step's batch from `batch_items` and return `run_batch(engine, batch, kv)`,
    tokens as ints. Runs in the policy's process, where `kv` (a `PagedKVStore`) lives from
    step to step; its answer is checked where it lands."""
    import torch

    from llmopt.workload import Request

    batch = Batch()
    for item in items:
        seq = Sequence(Request(item["request_id"], item["arrival_s"], item["prompt_len"], item["output_len"]),
                       token_ids=item["token_ids"])
        seq.num_computed_tokens, seq.num_generated = item["num_computed_tokens"], item["num_generated"]
        seq.num_cached_tokens, seq.block_table = item["num_cached_tokens"], list(item["block_table"])
        seq.num_preemptions = item["num_preemptions"]
        batch.add(seq, item["tokens"])
    with torch.no_grad():
        tokens = run_batch(engine, batch, kv)
    if isinstance(tokens, dict):  # tensors and numpy scalars are fine as tokens
        try:
            return {k: int(v) for k, v in tokens.items()}
        except (TypeError, ValueError):
            pass
    return tokens
