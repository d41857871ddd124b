"""Negative control: sequences grow without asking the pool, so the KV blocks run out (the
GPU's out-of-memory)."""
# targets: continuous_batching


class ContinuousBatchingScheduler(ContinuousBatchingScheduler):  # the control
    def grow(self, seq, n, batch):
        self.pool.allocate(seq, self.pool.blocks_needed(seq, n))  # BUG: never preempts
        return True
