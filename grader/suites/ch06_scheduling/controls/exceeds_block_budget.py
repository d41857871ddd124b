"""Negative control: continuous batching that admits and grows sequences without asking the
pool, so the KV blocks run out (the GPU's out-of-memory)."""
# targets: continuous_batching


class ContinuousBatchingScheduler(Scheduler):  # the control
    def schedule(self, now):
        batch = Batch()
        while self.waiting and len(self.running) < self.limits.max_num_seqs:
            self.running.append(self.waiting.popleft())
        for seq in self.running:
            n = seq.num_pending_tokens
            self.pool.allocate(seq, self.pool.blocks_needed(seq, n))
            batch.add(seq, n)
        return batch
