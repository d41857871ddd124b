"""Negative control: preemption requeues the victim but never frees its KV blocks."""
# targets: continuous_batching


class ContinuousBatchingScheduler(ContinuousBatchingScheduler):  # the control
    def preempt_latest(self, batch):
        victim = self.running.pop()
        self.waiting.appendleft(victim)  # BUG: its blocks stay allocated
        batch.preempted.append(victim)
        return victim
