"""Exercise 3: the block allocator, with a hypothesis state machine against a trusted model."""
import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from llmopt.kv_errors import DoubleFreeError, OutOfBlocksError


@pytest.mark.points(1)
def test_allocates_distinct_blocks_until_exhausted(student):
    """allocate() hands out every block once, then raises OutOfBlocksError with a message"""
    alloc = student.BlockAllocator(7)
    blocks = [alloc.allocate() for _ in range(7)]
    assert sorted(blocks) == list(range(7)), f"7 allocations from a pool of 7 must give blocks 0..6, got {blocks}"
    assert alloc.num_free.value() == 0, "num_free must be 0 when every block is allocated"
    with pytest.raises(OutOfBlocksError) as error:
        alloc.allocate()
        raise AssertionError("allocate() on an exhausted pool returned instead of raising OutOfBlocksError")
    assert str(error.value).strip(), "OutOfBlocksError needs a message that says what happened"
    alloc.free(blocks[3])
    assert alloc.allocate() == blocks[3], "a freed block can be allocated again"


@pytest.mark.points(1)
def test_double_free_raises(student):
    """freeing a free block, or one never allocated, raises DoubleFreeError"""
    alloc = student.BlockAllocator(4)
    block = alloc.allocate()
    alloc.free(block)
    with pytest.raises(DoubleFreeError):
        alloc.free(block)
        raise AssertionError("a second free of the same block returned instead of raising DoubleFreeError")
    untouched = [b for b in range(4) if b != block][0]
    with pytest.raises(DoubleFreeError):
        alloc.free(untouched)
        raise AssertionError("freeing a block that was never allocated must raise DoubleFreeError")
    assert alloc.num_free.value() == 4, "a refused free must not change the pool"


@pytest.mark.points(1)
def test_shared_block_stays_allocated(student):
    """a forked block is free only after its last reference is dropped"""
    alloc = student.BlockAllocator(3)
    block = alloc.allocate()
    assert alloc.fork(block) == block, "fork(block) returns the same block id"
    alloc.fork(block)
    assert alloc.ref_count(block) == 3, "one allocate and two forks: 3 references"
    for left in (2, 1):
        alloc.free(block)
        assert alloc.ref_count(block) == left and alloc.num_free.value() == 2, (
            "a block still referenced must stay allocated: count references before freeing")
    alloc.free(block)
    assert alloc.num_free.value() == 3 and alloc.ref_count(block) == 0


def test_bad_block_ids(student):
    """forking a free block or using an id outside the pool raises ValueError"""
    alloc = student.BlockAllocator(2)
    for call in (lambda: alloc.fork(1), lambda: alloc.ref_count(5), lambda: alloc.fork(-1)):
        with pytest.raises(ValueError):
            call()
            raise AssertionError("an invalid block id was accepted")


@pytest.mark.points(3)
@pytest.mark.timeout(90)
def test_state_machine(student):
    """random allocate / fork / free sequences keep reference counts exact (hypothesis)"""
    num_blocks = 6

    class AllocatorMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.alloc = student.BlockAllocator(num_blocks)
            self.refs = {}  # block -> references, in the trusted model

        @rule()
        def allocate(self):
            if len(self.refs) == num_blocks:
                with pytest.raises(OutOfBlocksError):
                    self.alloc.allocate()
                    raise AssertionError("the pool is full: allocate() must raise OutOfBlocksError")
                return
            block = self.alloc.allocate()
            assert isinstance(block, int) and 0 <= block < num_blocks and block not in self.refs, (
                f"allocate() returned {block!r}, which is not a free block (allocated: {sorted(self.refs)})")
            self.refs[block] = 1

        @precondition(lambda self: self.refs)
        @rule(data=st.data())
        def fork(self, data):
            block = data.draw(st.sampled_from(sorted(self.refs)))
            self.alloc.fork(block)
            self.refs[block] += 1

        @precondition(lambda self: self.refs)
        @rule(data=st.data())
        def free(self, data):
            block = data.draw(st.sampled_from(sorted(self.refs)))
            self.alloc.free(block)
            self.refs[block] -= 1
            if not self.refs[block]:
                del self.refs[block]

        @rule(block=st.integers(0, num_blocks - 1))
        def free_a_free_block(self, block):
            if block not in self.refs:
                with pytest.raises(DoubleFreeError):
                    self.alloc.free(block)
                    raise AssertionError(f"block {block} is free: freeing it must raise DoubleFreeError")

        @invariant()
        def counts_agree(self):
            got = [self.alloc.ref_count(b) for b in range(num_blocks)]
            want = [self.refs.get(b, 0) for b in range(num_blocks)]
            assert got == want, f"reference counts {got}, expected {want} after the same operations"
            free = self.alloc.num_free.value()
            assert free == num_blocks - len(self.refs), f"num_free is {free}, expected {num_blocks - len(self.refs)}"

    run_state_machine_as_test(AllocatorMachine, settings=settings(
        derandomize=True, max_examples=12, stateful_step_count=12, deadline=None))
