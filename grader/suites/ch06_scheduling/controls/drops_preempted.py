"""Negative control: a preempted request is evicted and forgotten (never requeued)."""
# targets: continuous_batching


class ContinuousBatchingScheduler(ContinuousBatchingScheduler):  # the control
    def preempt_latest(self, batch):
        victim = super().preempt_latest(batch)
        self.waiting.remove(victim)  # BUG: dropped on the floor
        return victim
