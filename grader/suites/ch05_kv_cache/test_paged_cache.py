"""Exercise 4: the paged KV cache, with a hypothesis state machine against a trusted model."""
import math

import pytest
import torch
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from llmopt.kv_errors import OutOfBlocksError

H_KV, D = 2, 4


def kv(n, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, H_KV, D, generator=gen), torch.randn(n, H_KV, D, generator=gen)


def assert_holds(cache, layer, seq, want_k, want_v, what):
    got_k, got_v = cache.gather(layer, seq)
    assert tuple(got_k.shape) == tuple(want_k.shape), (
        f"{what}: gather(layer, {seq!r}) keys have shape {tuple(got_k.shape)}, expected {tuple(want_k.shape)}")
    assert torch.equal(got_k, want_k) and torch.equal(got_v, want_v), (
        f"{what}: sequence {seq!r} does not read back the keys and values written to it "
        f"(check the slot mapping and copy-on-write)")


@pytest.mark.points(1)
def test_blocks_and_slot_mapping(student):
    """block tables grow one block at a time and slots are block * block_size + offset"""
    cache = student.PagedKVCache(32, 4, 1, H_KV, D)
    cache.add_sequence(7)
    seen = []
    for n in (1, 2, 5, 3, 4, 1):
        slots = cache.append_slots(7, n)
        seen += slots
        length = cache.seq_len(7)
        table = cache.block_table(7)
        assert len(table) == math.ceil(length / 4), (
            f"a sequence of {length} tokens in blocks of 4 must hold {math.ceil(length / 4)} blocks, "
            f"holds {len(table)}: waste at most block_size - 1 slots")
        want = [table[p // 4] * 4 + p % 4 for p in range(length)]
        assert seen == want, f"slot mapping {seen}, expected block_table[p // 4] * 4 + p % 4 = {want}"


@pytest.mark.points(1)
def test_write_then_gather_interleaved(student):
    """three sequences growing in turn each read back exactly their own tokens"""
    cache = student.PagedKVCache(40, 4, 2, H_KV, D)
    data = {s: ([], []) for s in "abc"}
    for s in "abc":
        cache.add_sequence(s)
    for step, (s, n) in enumerate([("a", 3), ("b", 6), ("a", 2), ("c", 9), ("b", 1), ("a", 7), ("c", 1)]):
        slots = cache.append_slots(s, n)
        for layer in range(2):
            k, v = kv(n, 100 * step + layer)
            cache.write(layer, slots, k, v)
            if layer == 1:
                data[s][0].append(k)
                data[s][1].append(v)
    for s in "abc":
        assert_holds(cache, 1, s, torch.cat(data[s][0]), torch.cat(data[s][1]), "interleaved appends")


@pytest.mark.points(2)
def test_fork_copy_on_write(student):
    """after a fork, parent and child both append into the shared partial block, isolated"""
    cache = student.PagedKVCache(16, 4, 2, H_KV, D)
    cache.add_sequence("p")
    k, v = kv(6, 1)
    slots = cache.append_slots("p", 6)
    for layer in range(2):
        cache.write(layer, slots, k, v)
    cache.fork("p", "c")
    assert cache.block_table("c") == cache.block_table("p"), "a fork shares the parent's blocks"
    for b in cache.block_table("p"):
        assert cache.allocator.ref_count(b) == 2, "a block shared by parent and child has 2 references"
    kc, vc = kv(3, 2)
    kp, vp = kv(1, 3)
    child_slots = cache.append_slots("c", 3)
    parent_slots = cache.append_slots("p", 1)
    for layer in range(2):
        cache.write(layer, child_slots, kc, vc)
        cache.write(layer, parent_slots, kp, vp)
    assert cache.block_table("c")[0] == cache.block_table("p")[0], "full blocks stay shared"
    assert cache.block_table("c")[1] != cache.block_table("p")[1], (
        "the shared partial block must be copied before a write (copy-on-write)")
    for layer in range(2):
        assert_holds(cache, layer, "p", torch.cat([k, kp]), torch.cat([v, vp]), f"parent, layer {layer}")
        assert_holds(cache, layer, "c", torch.cat([k, kc]), torch.cat([v, vc]), f"child, layer {layer}")
    cache.free("p")
    cache.free("c")
    assert cache.allocator.num_free.value() == 16, "after freeing every sequence no block may stay allocated"


def test_out_of_blocks(student):
    """appending past the pool raises OutOfBlocksError"""
    cache = student.PagedKVCache(3, 4, 1, H_KV, D)
    cache.add_sequence(0)
    cache.append_slots(0, 12)
    with pytest.raises(OutOfBlocksError):
        cache.append_slots(0, 1)
        raise AssertionError("a 13th token in 3 blocks of 4 must raise OutOfBlocksError")


@pytest.mark.points(3)
@pytest.mark.timeout(120)
def test_state_machine(student):
    """random add / append / fork / free: data intact, counts conserved, no leak (hypothesis)"""
    num_blocks, block_size = 12, 4

    class PagedMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.cache = student.PagedKVCache(num_blocks, block_size, 1, H_KV, D)
            self.data = {}  # seq -> (keys, values) the judge wrote
            self.next_id, self.writes = 0, 0

        def blocks_needed(self):
            return sum(math.ceil(len(k) / block_size) for k, _ in self.data.values())

        @precondition(lambda self: len(self.data) < 5)
        @rule()
        def add(self):
            self.cache.add_sequence(self.next_id)
            self.data[self.next_id] = (torch.zeros(0, H_KV, D), torch.zeros(0, H_KV, D))
            self.next_id += 1

        def write(self, seq, n):
            # worst case: every sequence's blocks private plus the new ones
            if self.blocks_needed() + math.ceil(n / block_size) + 1 > num_blocks:
                return
            slots = self.cache.append_slots(seq, n)
            self.writes += 1
            k, v = kv(n, self.writes)
            self.cache.write(0, slots, k, v)
            old_k, old_v = self.data[seq]
            self.data[seq] = (torch.cat([old_k, k]), torch.cat([old_v, v]))

        @precondition(lambda self: self.data)
        @rule(data=st.data(), n=st.integers(1, 6))
        def append(self, data, n):
            self.write(data.draw(st.sampled_from(sorted(self.data))), n)

        @precondition(lambda self: self.data and len(self.data) < 5)
        @rule(data=st.data(), n=st.integers(1, 3))
        def fork(self, data, n):
            """fork, then write into one side: the shared partial block must be copied"""
            seq = data.draw(st.sampled_from(sorted(self.data)))
            self.cache.fork(seq, self.next_id)
            self.data[self.next_id] = self.data[seq]
            self.write(data.draw(st.sampled_from([seq, self.next_id])), n)
            self.next_id += 1

        @precondition(lambda self: self.data)
        @rule(data=st.data())
        def free(self, data):
            seq = data.draw(st.sampled_from(sorted(self.data)))
            self.cache.free(seq)
            del self.data[seq]

        @invariant()
        def consistent(self):
            tables = {s: self.cache.block_table(s) for s in self.data}
            refs = {}
            for s, table in tables.items():
                length = len(self.data[s][0])
                assert len(table) == math.ceil(length / block_size), (
                    f"sequence {s} of length {length} holds {len(table)} blocks, expected "
                    f"{math.ceil(length / block_size)}")
                for b in table:
                    refs[b] = refs.get(b, 0) + 1
            for b in range(num_blocks):
                got = self.cache.allocator.ref_count(b)
                assert got == refs.get(b, 0), (
                    f"block {b} has reference count {got} but {refs.get(b, 0)} block tables point at it")
            free = self.cache.allocator.num_free.value()
            assert free == num_blocks - len(refs), (
                f"{free} blocks free, expected {num_blocks - len(refs)}: a block leaked or was freed while in use")
            for s in self.data:
                assert_holds(self.cache, 0, s, *self.data[s], "after random operations")

        def teardown(self):
            for s in list(self.data):
                self.cache.free(s)
            free = self.cache.allocator.num_free.value()
            assert free == num_blocks, f"after freeing every sequence only {free} of {num_blocks} blocks are free"

    run_state_machine_as_test(PagedMachine, settings=settings(
        derandomize=True, max_examples=10, stateful_step_count=15, deadline=None))
