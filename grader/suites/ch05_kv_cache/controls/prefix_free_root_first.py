"""Negative control: PrefixCache.free releases a request's blocks root first, so the
root of a shared prefix is the least recently used block and is evicted before the
request's private tail."""
# targets: prefix_cache


class PrefixCache(PrefixCache):  # noqa: F821 (negative control)
    def free(self, block_table):
        for block in block_table:  # BUG: root first; vLLM frees tail first
            if self.ref_counts[block] == 0:
                raise DoubleFreeError(f"block {block} is not referenced")  # noqa: F821
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                if block in self.hash_of:
                    self.evictable[block] = None
                else:
                    self.free_blocks.append(block)
