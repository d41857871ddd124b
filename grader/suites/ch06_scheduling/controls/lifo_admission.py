"""Negative control: admission takes the newest waiting request first (LIFO), not FCFS."""
# targets: continuous_batching


class ContinuousBatchingScheduler(Scheduler):  # the control
    def schedule(self, now):
        batch = Batch()
        index = 0
        while index < len(self.running):
            seq = self.running[index]
            n = seq.num_pending_tokens
            need = self.pool.blocks_needed(seq, n)
            while not self.pool.can_allocate(need) and seq in self.running:
                victim = self.running.pop()
                self.pool.free(victim)
                self.waiting.appendleft(victim)
                batch.preempted.append(victim)
            if seq not in self.running:
                break
            self.pool.allocate(seq, need)
            batch.add(seq, n)
            index += 1
        if batch.preempted:
            return batch
        while self.waiting and len(self.running) < self.limits.max_num_seqs:
            seq = self.waiting[-1]
            need = self.pool.blocks_needed(seq, seq.num_pending_tokens)
            if not self.pool.can_allocate(need):
                break
            self.pool.allocate(seq, need)
            self.running.append(self.waiting.pop())
            batch.add(seq, seq.num_pending_tokens)  # whole pending
        return batch
