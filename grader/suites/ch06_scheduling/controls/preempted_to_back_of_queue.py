"""Negative control: naive preemption, the victim goes to the back of the queue and can starve."""
# targets: continuous_batching


class ContinuousBatchingScheduler(ContinuousBatchingScheduler):  # the control
    def preempt_latest(self, batch):
        victim = super().preempt_latest(batch)
        self.waiting.rotate(-1)  # BUG: from the front of the queue to its back
        return victim
