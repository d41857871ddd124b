"""Negative control: the slot mapping is off by one (slot of position p + 1)."""
# targets: paged_cache


class PagedKVCache(PagedKVCache):  # negative control
    def append_slots(self, seq_id, n):
        super().append_slots(seq_id, n)
        table, length = self.block_tables[seq_id], self.seq_lens[seq_id]
        capacity = len(table) * self.block_size
        return [table[q // self.block_size] * self.block_size + q % self.block_size
                for q in (min(p + 1, capacity - 1) for p in range(length - n, length))]  # BUG: p + 1
