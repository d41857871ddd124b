"""Exercise 6: prefix caching, chained block hashes, LRU eviction, against a trusted model."""
import random

import pytest

from llmopt.kv_errors import OutOfBlocksError


@pytest.mark.points(1)
def test_hashes_are_chained(student):
    """equal prefixes hash equal; the same block after a different prefix hashes differently"""
    rng = random.Random(512)
    for block_size in (2, 4, 16):
        base = [rng.randrange(4096) for _ in range(5 * block_size + 1)]
        hashes = student.chained_block_hashes(base, block_size)
        assert isinstance(hashes, list) and len(hashes) == 5, (
            f"{len(base)} tokens in blocks of {block_size}: one hash per full block, 5, got {hashes!r}")
        assert student.chained_block_hashes(base[: 3 * block_size], block_size) == hashes[:3], (
            "the hashes of a prefix must equal the first hashes of the longer prompt")
        changed = list(base)
        changed[0] = (changed[0] + 1) % 4096
        other = student.chained_block_hashes(changed, block_size)
        assert all(a != b for a, b in zip(hashes, other)), (
            "changing the first token must change the hash of every block: chain each block's hash "
            "on the previous block's hash")
        assert student.chained_block_hashes(list(base), block_size) == hashes, "hashes must be deterministic"


@pytest.mark.points(1)
def test_reuse_and_last_token_block(student):
    """full shared blocks are reused; the block of the prompt's last token never is"""
    cache = student.PrefixCache(16, 4)
    prompt = list(range(100, 112))  # exactly 3 full blocks
    table, cached = cache.allocate(prompt)
    assert cached == 0 and len(table) == 3, f"a first request: 0 cached tokens and 3 blocks, got {cached}, {table}"
    cache.free(table)
    again, cached = cache.allocate(prompt)
    assert cached == 8 and again[:2] == table[:2], (
        f"the same 12-token prompt again: blocks 0 and 1 are hits (8 tokens); the block holding the "
        f"last token is computed afresh. Got {cached} cached tokens, table {again} vs {table}")
    longer, cached = cache.allocate(prompt + [7, 8, 9])
    assert cached == 12 and longer[:3] == table[:3], (
        f"a longer prompt sharing 12 tokens reuses 3 full blocks, got {cached} cached tokens")
    assert cache.ref_count(table[0]) == 2, "a block used by two live requests has 2 references"


@pytest.mark.points(1)
def test_lru_eviction(student):
    """with no free block, the least recently freed cached block is evicted first"""
    cache = student.PrefixCache(4, 2)
    a, _ = cache.allocate([1, 2, 3])  # blocks: [1, 2] cached, [3] partial
    b, _ = cache.allocate([5, 6, 7])
    cache.free(a)  # a's full block freed first: the LRU one
    cache.free(b)
    assert cache.num_free_blocks() == 4, "freed blocks (cached or not) all count as free"
    c, _ = cache.allocate([9, 10, 11, 12, 13])  # needs 3 blocks: 2 free + 1 evicted
    cache.free(c)
    _, hit_b = cache.allocate([5, 6, 0])
    assert hit_b == 2, "[5, 6] was freed after [1, 2], so it must still be cached"
    _, hit_a = cache.allocate([1, 2, 0])
    assert hit_a == 0, "[1, 2] was the least recently used cached block: it should have been evicted first"


@pytest.mark.points(1)
def test_out_of_blocks(student):
    """when every block is referenced, allocate raises OutOfBlocksError and leaks nothing"""
    cache = student.PrefixCache(3, 2)
    held, _ = cache.allocate([1, 2, 3, 4])
    with pytest.raises(OutOfBlocksError):
        cache.allocate([7, 8, 9, 10])
        raise AssertionError("2 more blocks from a pool with 1 free must raise OutOfBlocksError")
    assert cache.num_free_blocks() == 1, "a refused allocation must give back what it took"
    cache.free(held)
    assert cache.num_free_blocks() == 3


@pytest.mark.points(2)
def test_shared_root_survives_eviction(student):
    """free() releases a request's blocks tail first: under eviction pressure a finished
    request's private tail is evicted before the system prompt that others share"""
    block_size = 2
    cache = student.PrefixCache(8, block_size)
    system = [11, 12, 13, 14]  # two full blocks that every chat starts with
    first, _ = cache.allocate(system + [21, 22, 23, 24, 25])  # 2 shared + 2 private full + 1 partial
    cache.free(first)
    assert cache.num_free_blocks() == 8, "after the only request is freed every block is free or evictable"
    other, _ = cache.allocate([90 + i for i in range(11)])  # 6 blocks: 4 free + 2 evicted
    cache.free(other)
    table, cached = cache.allocate(system + [31, 32, 33])
    assert cached == len(system), (
        f"the shared system prompt should still be cached after 2 evictions, found {cached} of its "
        f"{len(system)} tokens: free a request's blocks from its last to its first, so that its private "
        f"tail becomes least recently used before the root it shares")
    cache.free(table)


def chat_trace(seed, sessions, turns, vocab):
    rng = random.Random(seed)
    system = [rng.randrange(vocab) for _ in range(21)]
    prompts = []
    for _ in range(sessions):
        history = list(system)
        for _ in range(turns):
            history += [rng.randrange(vocab) for _ in range(rng.randint(1, 9))]
            prompts.append(list(history))
            history += [rng.randrange(vocab) for _ in range(rng.randint(1, 9))]
    rng.shuffle(prompts)  # later turns may arrive before earlier ones
    return prompts


@pytest.mark.points(2)
@pytest.mark.timeout(60)
def test_hits_are_the_same_prefix(student):
    """every hit block holds exactly the request's prefix (a tiny vocabulary makes equal
    blocks after different prefixes common), and no live block is handed out twice"""
    block_size = 2
    cache = student.PrefixCache(200, block_size)
    rng = random.Random(513)
    content = {}  # block -> the token prefix whose KV it holds, in the judge's model
    live = []
    for prompt in chat_trace(514, 5, 4, vocab=3):
        table, cached = cache.allocate(prompt)
        assert cached % block_size == 0 and cached <= len(prompt) - 1, f"num_cached_tokens {cached} is impossible"
        in_use = {b for t in live for b in t}
        for i, block in enumerate(table):
            prefix = tuple(prompt[: (i + 1) * block_size])
            if i < cached // block_size:
                assert content.get(block) == prefix, (
                    "a cache hit served a block computed for a different prefix: the KV would be wrong. "
                    "Chain each block's hash over the whole prefix")
            else:
                assert block not in in_use, f"block {block} is handed out while a live request uses it"
                content[block] = prefix
        live.append(table)
        if len(live) > 2 or rng.random() < 0.5:
            cache.free(live.pop(rng.randrange(len(live))))
    for table in live:
        cache.free(table)
    assert cache.num_free_blocks() == 200, "after every request is freed, every block is free or evictable"


@pytest.mark.points(2)
def test_hit_rate_on_a_chat_trace(student):
    """hits and stats on a multi-turn trace equal a trusted count (ample memory, no eviction)"""
    block_size = 4
    cache = student.PrefixCache(400, block_size)
    seen, queried, hits = set(), 0, 0
    for prompt in chat_trace(515, 6, 4, vocab=50):
        shareable = (len(prompt) - 1) // block_size
        want = 0
        while want < shareable and tuple(prompt[: (want + 1) * block_size]) in seen:
            want += 1
        for i in range(len(prompt) // block_size):
            seen.add(tuple(prompt[: (i + 1) * block_size]))
        table, cached = cache.allocate(prompt)
        assert cached == want * block_size, (
            f"a {len(prompt)}-token prompt should find {want * block_size} tokens cached, got {cached}")
        queried, hits = queried + shareable, hits + want
        cache.free(table)
    stats = cache.stats()
    assert stats == {"queried_blocks": queried, "hit_blocks": hits}, (
        f"stats() = {stats}, expected {{'queried_blocks': {queried}, 'hit_blocks': {hits}}}")
