"""Negative control: admission takes the newest waiting request first (LIFO), not FCFS."""
# targets: continuous_batching


class ContinuousBatchingScheduler(ContinuousBatchingScheduler):  # the control
    def admit(self, batch, now, token_budget=None):
        while self.waiting and len(self.running) < self.limits.max_num_seqs:
            seq = self.waiting[-1]  # BUG: the newest arrival first
            need = self.pool.blocks_needed(seq, seq.num_pending_tokens)
            if not self.pool.can_allocate(need):
                break
            self.pool.allocate(seq, need)
            self.running.append(self.waiting.pop())
            batch.add(seq, seq.num_pending_tokens)
