"""The instructors' reference policies: trusted code the suites run in the judge process,
to measure the goodput a student's policy is compared with."""

from llmopt.simulator import Batch, Scheduler


def _preempt_latest(sched, batch):
    victim = sched.running.pop()  # the most recently admitted
    sched.pool.free(victim)
    sched.waiting.appendleft(victim)  # first in line again: it cannot starve
    batch.preempted.append(victim)
    return victim


def _grow(sched, batch, seq, n):
    """Give seq room for n more tokens, preempting the latest admitted; False if seq went."""
    need = sched.pool.blocks_needed(seq, n)
    while not sched.pool.can_allocate(need):
        if _preempt_latest(sched, batch) is seq:
            return False
    sched.pool.allocate(seq, need)
    return True


class RefContinuous(Scheduler):
    def schedule(self, now):
        batch = Batch()
        index = 0
        while index < len(self.running):
            seq = self.running[index]
            n = seq.num_pending_tokens
            if not _grow(self, batch, seq, n):
                break
            batch.add(seq, n)
            index += 1
        if batch.preempted:
            return batch
        while self.waiting and len(self.running) < self.limits.max_num_seqs:
            seq = self.waiting[0]
            n = seq.num_pending_tokens
            need = self.pool.blocks_needed(seq, n)
            if not self.pool.can_allocate(need):
                break
            self.pool.allocate(seq, need)
            self.running.append(self.waiting.popleft())
            batch.add(seq, n)
        return batch


class RefChunked(Scheduler):
    def schedule(self, now):
        batch = Batch()
        cap = self.limits.max_num_batched_tokens
        index = 0
        while index < len(self.running) and batch.num_tokens < cap:
            seq = self.running[index]
            if seq.is_decoding:
                if not _grow(self, batch, seq, 1):
                    break
                batch.add(seq, 1)
            index += 1
        if batch.preempted:
            return batch
        for seq in list(self.running):
            left = cap - batch.num_tokens
            if seq.is_decoding or left <= 0:
                continue
            n = min(seq.num_pending_tokens, left)
            need = self.pool.blocks_needed(seq, n)
            if self.pool.can_allocate(need):
                self.pool.allocate(seq, need)
                batch.add(seq, n)
        while self.waiting and len(self.running) < self.limits.max_num_seqs:
            left = cap - batch.num_tokens
            if left <= 0:
                break
            seq = self.waiting[0]
            n = min(seq.num_pending_tokens, left)
            need = self.pool.blocks_needed(seq, n)
            if not self.pool.can_allocate(need):
                break
            self.pool.allocate(seq, need)
            self.running.append(self.waiting.popleft())
            batch.add(seq, n)
        return batch


class RefDecode(Scheduler):
    def schedule(self, now):
        batch = Batch()
        index = 0
        while index < len(self.running):
            seq = self.running[index]
            n = seq.num_pending_tokens
            if not _grow(self, batch, seq, n):
                break
            batch.add(seq, n)
            index += 1
        if batch.preempted:
            return batch
        for seq in list(self.waiting):
            if len(self.running) >= self.limits.max_num_seqs:
                break
            if seq.kv_ready_s > now:
                continue
            n = seq.num_pending_tokens
            need = self.pool.blocks_needed(seq, n)
            if not self.pool.can_allocate(need):
                break
            self.pool.allocate(seq, need)
            self.waiting.remove(seq)
            self.running.append(seq)
            batch.add(seq, n)
        return batch


# ---------------------------------------------------------------------------------------
# Shared by the suites: run a student's policy in the worker, the reference here.
# ---------------------------------------------------------------------------------------

from llmopt.simulator import SchedulingError, simulate, simulate_disaggregated  # noqa: E402


def run_student(student, policy, trace, disaggregated=False, **kwargs):
    """(requests, step_stats, violations) of the student's policy class, run in the worker."""
    fn = "llmopt.simulator:simulate_disaggregated" if disaggregated else "llmopt.simulator:simulate"
    try:
        result = student.library(fn)([r.to_dict() for r in trace], getattr(student, policy),
                                     strict=False, **kwargs)
        return result.requests(), result.step_stats(), result.violations.value()
    except SchedulingError as stopped:
        raise AssertionError(f"the simulator stopped your {policy}: {stopped}") from None


def run_reference(policy_cls, trace, disaggregated=False, **kwargs):
    result = (simulate_disaggregated if disaggregated else simulate)(trace, policy_cls, **kwargs)
    return result.requests()


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
