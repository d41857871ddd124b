"""Negative control: fork shares blocks but appending never copies a shared partial block."""
# targets: paged_cache


class PagedKVCache(PagedKVCache):  # negative control
    def _copy_on_write(self, seq_id):
        return  # BUG: parent and child write into the same block
