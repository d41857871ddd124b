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
        budget = self.limits.max_num_batched_tokens
        index = 0
        while index < len(self.running) and batch.num_tokens < budget:
            seq = self.running[index]
            if seq.is_decoding:
                if not _grow(self, batch, seq, 1):
                    break
                batch.add(seq, 1)
            index += 1
        if batch.preempted:
            return batch
        for seq in list(self.running):
            left = budget - batch.num_tokens
            if seq.is_decoding or left <= 0:
                continue
            n = min(seq.num_pending_tokens, left)
            need = self.pool.blocks_needed(seq, n)
            if self.pool.can_allocate(need):
                self.pool.allocate(seq, need)
                batch.add(seq, n)
        while self.waiting and len(self.running) < self.limits.max_num_seqs:
            left = budget - batch.num_tokens
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
