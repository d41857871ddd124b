"""Negative control: free() returns a block to the pool at once, even while it is still shared."""
# targets: block_allocator, paged_cache


class BlockAllocator(BlockAllocator):  # negative control
    def free(self, block):
        self._check(block)
        if self.ref_counts[block] == 0:
            raise DoubleFreeError(f"block {block} is already free")
        self.ref_counts[block] = 0  # BUG: ignores the other references
        self.free_blocks.append(block)
