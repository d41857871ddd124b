"""Exercise 6: the paged KV cache behind the engine's seam. Tokens are compared with
transformers generate(do_sample=False) run in the judge; the keys and values are read
by the judge through the block tables, in a pool whose free blocks it scattered and
filled with NaN itself. Nothing the student returns is used as an oracle."""
import math

import pytest
import torch
import torch.nn.functional as F

NO_TOKEN = -1
HIDDEN_PROMPTS = [
    "class Queue:\n    def __init__(self):\n        self.",
    "import json\n\ndef load(path):\n",
    "    for index, item in enumerate(items):\n        ",
    "x = [",
]
NEW_TOKENS = 14  # blocks of 4: every row crosses several block boundaries while decoding


class KeyRecorder:
    """A trusted cache for the judge's own engine: keeps each layer's keys of one forward."""

    def __init__(self):
        self.keys = {}

    def update(self, layer, keys, values, positions):
        from llmopt.engine import KVView

        self.keys[layer] = keys  # (B, H_kv, T, D), rotated
        return KVView(keys, values, positions)


def judge_engine(model):
    from llmopt.engine import Engine

    return Engine.from_model(model)


@pytest.fixture(scope="module")
def judge_model():
    from llmopt.models import load_model, load_tokenizer

    return load_model("course-lm"), load_tokenizer("course-lm")


def scattered_pool(student, num_blocks, block_size, n_layers, n_kv_heads, head_dim):
    """A student PagedKVCache whose free blocks are scattered between live ones and hold
    NaN: sequences "hog0".. take one block each, filled with NaN, and every other one is
    freed. Returns the cache, the live hogs' blocks and the value the judge wrote there."""
    cache = student.PagedKVCache(num_blocks, block_size, n_layers, n_kv_heads, head_dim)
    nan = torch.full((block_size, n_kv_heads, head_dim), float("nan"))
    marker = torch.full((block_size, n_kv_heads, head_dim), 7.0)
    live = {}
    for i in range(12):
        name = f"hog{i}"
        cache.add_sequence(name)
        slots = cache.append_slots(name, block_size)
        for layer in range(n_layers):
            cache.write(layer, slots, marker if i % 2 else nan, marker if i % 2 else nan)
        if i % 2:
            live[name] = slots
    for i in range(0, 12, 2):
        cache.free(f"hog{i}")
    return cache, live, marker


def table_of(cache, seq, num_blocks, length, block_size):
    table = cache.block_table(seq)
    assert isinstance(table, list) and all(isinstance(b, int) and 0 <= b < num_blocks for b in table), (
        f"block_table({seq!r}) must be a list of block ids in [0, {num_blocks}), got {table!r}"[:300])
    assert len(table) == math.ceil(length / block_size), (
        f"sequence {seq!r} of {length} tokens should hold {math.ceil(length / block_size)} blocks, "
        f"holds {len(table)}")
    return table


def read_through_tables(key_cache, layer, table, length):
    """(length, H_kv, D): the judge's own read of a sequence's keys through its table."""
    return key_cache[layer, torch.tensor(table, dtype=torch.long)].flatten(0, 1)[:length]


def dense_attention(query, keys, values):
    """query (H, T_q, D) attending to all of keys/values (T, H_kv, D), no mask: (H, T_q, D)."""
    by_head = [t.transpose(0, 1)[None] for t in (keys, values)]  # (1, H_kv, T, D) each
    return F.scaled_dot_product_attention(query[None], *by_head, enable_gqa=True)[0]


@pytest.mark.points(3)
@pytest.mark.timeout(60)
def test_decode_step_reads_through_block_tables(student):
    """a decode step attends to KV the judge wrote through the paged cache's own tables"""
    gen = torch.Generator().manual_seed(530)
    num_blocks, block_size, n_layers, H, H_kv, D = 40, 4, 2, 8, 2, 16
    cache, _, _ = scattered_pool(student, num_blocks, block_size, n_layers, H_kv, D)
    lengths = [9, 3, 14]
    past = {}
    for row, n in enumerate(lengths):  # interleaved growth: tables are not contiguous
        cache.add_sequence(row)
    for start in range(0, max(lengths), 3):
        for row, n in enumerate(lengths):
            count = min(3, n - start)
            if count <= 0:
                continue
            slots = cache.append_slots(row, count)
            for layer in range(n_layers):
                k, v = torch.randn(count, H_kv, D, generator=gen), torch.randn(count, H_kv, D, generator=gen)
                cache.write(layer, slots, k, v)
                old_k, old_v = past.get((row, layer), (torch.zeros(0, H_kv, D), torch.zeros(0, H_kv, D)))
                past[row, layer] = (torch.cat([old_k, k]), torch.cat([old_v, v]))
    engine_cache = student.PagedEngineCache(cache, [0, 1, 2])
    positions = torch.tensor(lengths)[:, None]  # (B, 1): one new token per row
    new_keys = {}
    for layer in range(n_layers):
        query = torch.randn(3, H, 1, D, generator=gen)
        keys, values = torch.randn(3, H_kv, 1, D, generator=gen), torch.randn(3, H_kv, 1, D, generator=gen)
        new_keys[layer] = keys
        got = engine_cache.attend(layer, query, keys, values, positions)
        assert isinstance(got, torch.Tensor) and tuple(got.shape) == (3, H, 1, D), (
            f"attend returns (B, H, T, D) = (3, {H}, 1, {D}), got "
            f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
        for row in range(3):
            k = torch.cat([past[row, layer][0], keys[row].transpose(0, 1)])
            v = torch.cat([past[row, layer][1], values[row].transpose(0, 1)])
            want = dense_attention(query[row], k, v)
            err = (got[row].float() - want).abs().max()
            assert err < 1e-4, (
                f"layer {layer}, row {row}: the decode step's output differs from attention over the "
                f"keys and values stored in the paged cache (error {err:.3g}). Read the past through the "
                f"PagedKVCache's block tables, not from a copy of your own")
    key_cache = cache.key_cache.value()
    for row, n in enumerate(lengths):
        assert cache.seq_len(row) == n + 1, f"after one decode step sequence {row} must hold {n + 1} tokens"
        table = table_of(cache, row, num_blocks, n + 1, block_size)
        for layer in range(n_layers):
            stored = read_through_tables(key_cache, layer, table, n + 1)
            assert torch.equal(stored[:n], past[row, layer][0]), (
                f"row {row}, layer {layer}: the keys written before the step changed")
            assert torch.equal(stored[n], new_keys[layer][row, :, 0]), (
                f"row {row}, layer {layer}: the new token's key is not at its slot in the block table")


@pytest.mark.points(4)
@pytest.mark.timeout(180)
def test_course_model_decodes_through_scattered_blocks(student, judge_model):
    """left-padded prompts of different lengths decode token-equal to transformers, with
    the KV at the slots of each row's block table in a scattered, NaN-filled pool"""
    model, tokenizer = judge_model
    w = model.config
    n_layers, H_kv = w.num_hidden_layers, w.num_key_value_heads
    head_dim = getattr(w, "head_dim", None) or w.hidden_size // w.num_attention_heads
    num_blocks, block_size = 96, 4
    cache, live, marker = scattered_pool(student, num_blocks, block_size, n_layers, H_kv, head_dim)
    engine = student.library("llmopt.engine:Engine").from_checkpoint("course-lm")
    batch = tokenizer(HIDDEN_PROMPTS, return_tensors="pt", padding=True)
    want = model.generate(**batch, do_sample=False, max_new_tokens=NEW_TOKENS)
    got = student.generate_paged(engine, batch.input_ids, batch.attention_mask, NEW_TOKENS, cache)
    assert isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(want.shape), (
        f"expected a tensor of shape {tuple(want.shape)}, got "
        f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
    bad = [row for row in range(len(want)) if got[row].tolist() != want[row].tolist()]
    assert not bad, (
        f"rows {bad} differ from transformers' greedy generation: check the slot mapping, that padding "
        f"gets no slot, and that unused slots of a block (NaN here) cannot reach the output")

    # The judge's own keys for each row: its real tokens, fed once through the judge's model.
    key_cache = cache.key_cache.value()
    used = {}
    for row in range(len(want)):
        real = batch.attention_mask[row].bool()
        fed = torch.cat([batch.input_ids[row][real], want[row, batch.input_ids.shape[1]:-1]])
        length = len(fed)
        assert cache.seq_len(row) == length, (
            f"sequence {row} should hold {length} tokens (its real prompt tokens and every token fed back), "
            f"holds {cache.seq_len(row)}")
        table = table_of(cache, row, num_blocks, length, block_size)
        for block in table:
            assert block not in used, f"block {block} is in the tables of rows {used[block]} and {row}"
            used[block] = row
        recorder = KeyRecorder()
        with torch.no_grad():
            judge_engine(model).forward(fed[None], torch.arange(length)[None], recorder)
        for layer in (0, n_layers - 1):
            judge_keys = recorder.keys[layer][0].transpose(0, 1)  # (T, H_kv, D)
            stored = read_through_tables(key_cache, layer, table, length)
            err = (stored - judge_keys).abs().max()
            assert err < 1e-3, (
                f"row {row}, layer {layer}: the keys at the slots of the row's block table are not the "
                f"row's keys (error {err:.3g}): write every token through its slot mapping into the pool")
    for name, slots in live.items():
        blocks = sorted({s // block_size for s in slots})
        assert not set(blocks) & set(used), f"a live sequence's block {blocks} was handed to a row"
        assert torch.equal(key_cache[:, blocks], marker.expand(n_layers, *marker.shape)[:, None]), (
            "the blocks of another live sequence were overwritten while decoding")
