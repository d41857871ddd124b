"""Negative control: a contiguous cache in disguise. It writes every token through the
slot mapping (so the pool looks right afterwards) but reads the past from a contiguous
copy of its own, never through the block tables."""
# targets: paged_engine


class PagedEngineCache(PagedEngineCache):  # noqa: F821 (negative control)
    def __init__(self, paged_cache, seq_ids):
        super().__init__(paged_cache, seq_ids)
        self.shadow = None

    def attend(self, layer, query, keys, values, positions):
        super().attend(layer, query, keys, values, positions)  # the pool gets the writes
        if self.shadow is None:
            self.shadow = ContiguousKVCache(16, keys.shape[0], keys.shape[1], keys.shape[3], 512)  # noqa: F821
        view = self.shadow.update(layer, keys, values, positions)  # BUG: reads its own copy
        return attention(query, view.keys, view.values, positions, view.positions)  # noqa: F821
