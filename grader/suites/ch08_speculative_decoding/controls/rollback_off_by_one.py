"""Negative control: truncate keeps one slot too many, so a rejected draft's key and value stay behind."""
# targets: speculative_decoding


class RollbackKVCache(RollbackKVCache):  # negative control
    def truncate(self, length):
        super().truncate(min(length + 1, self.length))  # BUG: off by one
