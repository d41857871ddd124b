"""The KV-cache block manager's own exceptions (chapter 5).

They live in the course library, not in a notebook, so that a student's allocator and
the grader agree on their types: the judge re-raises a student's exception of an
`llmopt` type with that type, and a hidden test can catch exactly `OutOfBlocksError`.
"""


class KVCacheError(Exception):
    """Base class of the block manager's errors."""


class OutOfBlocksError(KVCacheError, MemoryError):
    """Every block of the pool is in use (and none can be evicted)."""


class DoubleFreeError(KVCacheError, ValueError):
    """A block was freed more times than it was referenced."""
