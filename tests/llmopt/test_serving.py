"""The near-tie allowance of chapter 6's real-engine check: explicit, reported, never silent."""

import pytest

from llmopt.serving import NEAR_TIE, near_tie_flips

ALONE = [([5, 6, 7, 8], [0.9, 0.5, NEAR_TIE / 10, 0.3]), ([1, 2], [0.2, 0.2])]


def test_identical_tokens_have_no_flips():
    assert near_tie_flips({"tokens": {0: [5, 6, 7, 8], 1: [1, 2]}}, ALONE) == []


def test_a_flip_at_a_near_tie_is_allowed_and_reported():
    served = {"tokens": {"0": [5, 6, 9, 4], "1": [1, 2]}}  # keys as they come back from JSON
    assert near_tie_flips(served, ALONE) == [(0, 2, NEAR_TIE / 10)]


def test_a_flip_where_the_logits_were_far_apart_fails():
    with pytest.raises(AssertionError, match="request 0 differs .* at token 1"):
        near_tie_flips({"tokens": {0: [5, 3, 7, 8], 1: [1, 2]}}, ALONE)


def test_a_missing_token_fails():
    with pytest.raises(AssertionError, match="request 1 generated 1 tokens, expected 2"):
        near_tie_flips({"tokens": {0: [5, 6, 7, 8], 1: [1]}}, ALONE)


# -- the KV-block pool: block tables, reference counts, the prefix cache -------------------

import torch  # noqa: E402

from llmopt.serving import PagedKVStore  # noqa: E402
from llmopt.simulator import KVBlockPool, OutOfKVBlocks, Sequence  # noqa: E402
from llmopt.workload import Request  # noqa: E402


def seq(request_id, token_ids, output_len=4):
    return Sequence(Request(request_id, 0.0, len(token_ids), output_len), token_ids=token_ids)


def admit(pool, s):
    """What a scheduler does for a new sequence: blocks for its whole prompt."""
    pool.allocate(s, pool.blocks_needed(s, s.num_pending_tokens))


def run_prefill(s):
    s.num_computed_tokens = s.num_tokens  # as the simulator commits a step


SHARED = list(range(100, 112))  # three blocks of 4


def test_a_shared_prefix_is_found_and_shared_not_copied():
    pool = KVBlockPool(16, 4)
    a, b = seq(0, SHARED + [1, 2]), seq(1, SHARED + [3, 4, 5])
    admit(pool, a)
    assert a.num_cached_tokens == 0 and len(a.block_table) == 4
    run_prefill(a)
    admit(pool, b)
    assert b.block_table[:3] == a.block_table[:3] and b.block_table[3] not in a.block_table
    assert b.num_cached_tokens == 12 and pool.hit_tokens == {0: 0, 1: 12}
    assert [pool.ref_count[x] for x in a.block_table] == [2, 2, 2, 1]
    assert pool.total_held() == 5 and pool.num_free == 11  # shared blocks count once
    assert b.compute_range(b.num_pending_tokens) == (12, 15)


def test_a_block_is_found_only_once_computed():
    pool = KVBlockPool(16, 4)
    a, b = seq(0, SHARED + [1]), seq(1, SHARED + [2])
    admit(pool, a)
    admit(pool, b)  # the same step: a's blocks are not computed yet
    assert b.num_cached_tokens == 0
    a.num_computed_tokens = 8  # a chunk of 8: two full blocks
    c = seq(2, SHARED + [3])
    admit(pool, c)
    assert c.num_cached_tokens == 8 and c.block_table[:2] == a.block_table[:2]


def test_the_hit_leaves_the_last_token_to_compute_and_takes_no_more_blocks_than_asked():
    pool = KVBlockPool(16, 4)
    a = seq(0, SHARED)
    admit(pool, a)
    run_prefill(a)
    same = seq(1, SHARED)  # the whole prompt is cached, but its logits must be computed
    admit(pool, same)
    assert same.num_cached_tokens == 8 and same.compute_range(12) == (8, 12)
    chunk = seq(2, SHARED + [7])
    pool.allocate(chunk, 1)  # one block asked for (a chunk of 4)
    assert chunk.num_cached_tokens == 4 and len(chunk.block_table) == 1
    assert chunk.compute_range(4) == (4, 4)  # this chunk lies inside the hit: nothing to compute


def test_freed_blocks_stay_cached_until_needed_tail_first():
    pool = KVBlockPool(6, 4)
    a = seq(0, SHARED + [1, 2])
    admit(pool, a)
    run_prefill(a)
    root, middle, tail = a.block_table[:3]
    pool.free(a)
    assert a.block_table == [] and a.num_cached_tokens == 0 and pool.num_free == 6
    # the one block holding nothing nameable is reused first, then the cached tail, the root last
    other = seq(1, [9] * 16)  # four blocks: the two never used, the unnamed one, then one cached
    admit(pool, other)
    assert tail in other.block_table and root not in other.block_table and middle not in other.block_table
    pool.free(other)
    again = seq(2, SHARED + [5])
    admit(pool, again)
    assert again.num_cached_tokens == 8 and again.block_table[:2] == [root, middle]


def test_a_preempted_sequence_finds_its_own_prompt_again():
    pool = KVBlockPool(16, 4)
    a = seq(0, SHARED + [1, 2])
    admit(pool, a)
    run_prefill(a)
    pool.free(a)  # preempted
    a.num_computed_tokens = 0
    admit(pool, a)
    assert a.num_cached_tokens == 12 and pool.hit_tokens[0] == 12


def test_allocation_past_the_pool_fails_and_changes_nothing():
    pool = KVBlockPool(3, 4)
    a = seq(0, SHARED + [1])
    with pytest.raises(OutOfKVBlocks):
        admit(pool, a)
    assert pool.num_free == 3 and a.block_table == [] and pool.blocks_held(a) == 0


def test_precomputed_block_hashes_name_pool_blocks():
    """The Mooncake trace names 512-token blocks; a pool of 16-token blocks names each of
    its blocks by (512-token block, offset), chained: equal ids share, a new id stops."""
    pool = KVBlockPool(200, 16)

    def trace_seq(request_id, hash_ids, prompt_len):
        return Sequence(Request(request_id, 0.0, prompt_len, 8), block_hashes=hash_ids, hash_block_size=512)

    a = trace_seq(0, [7, 8, 9], 1100)
    admit(pool, a)
    run_prefill(a)
    b = trace_seq(1, [7, 8, 40], 1200)
    admit(pool, b)
    assert b.num_cached_tokens == 1024 and b.block_table[:64] == a.block_table[:64]
    c = trace_seq(2, [5, 8], 1000)  # same second id, different first: a different prefix
    admit(pool, c)
    assert c.num_cached_tokens == 0


def test_the_paged_store_writes_and_reads_slots():
    store = PagedKVStore(num_layers=2, num_blocks=4, block_size=4, n_kv_heads=2, head_dim=3)
    keys, values = torch.randn(5, 2, 3), torch.randn(5, 2, 3)
    slots = torch.tensor([13, 2, 7, 0, 8])
    store.write(1, slots, keys, values)
    got_k, got_v = store.read(1, slots)
    assert torch.equal(got_k, keys) and torch.equal(got_v, values)
    assert not store.keys[0].any()  # another layer untouched


def test_a_sequence_shares_what_an_earlier_one_computes_in_the_same_step():
    pool = KVBlockPool(16, 4)
    a, b = seq(0, SHARED + [1, 2]), seq(1, SHARED + [3])
    admit(pool, a)
    admit(pool, b)
    assert b.num_cached_tokens == 0 and pool.total_held() == 8
    pool.share_within_step([(a, a.num_pending_tokens), (b, b.num_pending_tokens)])
    assert b.block_table[:3] == a.block_table[:3] and b.num_cached_tokens == 12
    assert pool.total_held() == 5 and pool.hit_tokens[1] == 12  # b's own three went back
    assert b.compute_range(b.num_pending_tokens) == (12, 13)


def test_a_chunk_shares_only_the_blocks_it_fills():
    pool = KVBlockPool(16, 4)
    a, b = seq(0, SHARED + [1, 2]), seq(1, SHARED + [3])
    pool.allocate(a, 2)  # a chunk of 6 fills one block, half of the next
    admit(pool, b)
    pool.share_within_step([(a, 6), (b, b.num_pending_tokens)])
    assert b.num_cached_tokens == 4 and b.block_table[0] == a.block_table[0]


def test_the_paged_store_reads_whole_blocks_in_token_order():
    store = PagedKVStore(num_layers=1, num_blocks=4, block_size=2, n_kv_heads=1, head_dim=1)
    store.write(0, torch.arange(8), torch.arange(8.0).view(8, 1, 1), -torch.arange(8.0).view(8, 1, 1))
    keys, values = store.read_blocks(0, torch.tensor([[3, 0], [1, 1]]))
    assert keys.shape == (2, 4, 1, 1)
    assert keys.flatten().tolist() == [6, 7, 0, 1, 2, 3, 2, 3] and torch.equal(values, -keys)
