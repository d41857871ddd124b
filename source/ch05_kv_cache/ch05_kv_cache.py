# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   llmcourse:
#     chapter: ch05_kv_cache
# ---

# %% [markdown]
# # Chapter 5 · KV Cache Optimization
# ## 第5章 KV Cache优化
#
# A decoder generates one token at a time, and every new token attends to the keys and
# values of all the tokens before it. Recompute them at every step and a 512-token answer
# costs hundreds of full forward passes; keep them and each step touches one token. That
# memory, the **KV cache**, then becomes the resource a serving system runs out of first.
# This chapter builds it three times, each time wasting less: recompute, a contiguous
# cache, and a paged cache with shared prefixes.
#
# **Learning goals · 学习目标**
#
# 1. Write attention from scratch with a causal mask that stays right when the query is
#    shorter than the keys (decoding), and with grouped-query (GQA) heads.
# 2. Decode with a contiguous KV cache through the course engine, token for token equal
#    to `transformers`, and measure what it saves per token as the sequence grows.
# 3. Manage KV memory in fixed-size blocks: an allocator with reference counts, a paged
#    cache with block tables, slot mappings and copy-on-write, and attention that reads
#    through block tables, in PyTorch and as a Triton kernel.
# 4. Decode the course model through block tables, behind the engine's cache seam.
# 5. Share the KV of a common prompt prefix across requests with chained block hashes
#    and LRU eviction, and measure the prefill it saves.
# 6. Size KV memory for MHA, GQA, MLA and FP8 KV, and turn it into the number of
#    sequences a GPU can hold at once.
#
# **Why it matters in money.** Decode is bound by memory traffic, and how many requests a
# GPU can batch is bounded by how much KV memory they need. The vLLM authors report that
# serving systems before paging "waste 60%–80% of memory due to fragmentation and
# over-reservation", and PagedAttention "a mere waste of under 4%" [@vllm2023-blog], for
# 2–4× throughput at the same latency [@kwon2023-vllm]. More requests per GPU means fewer
# GPU-hours per million tokens; section 8 and the ROI formula at the end count how many.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false}
import dataclasses
import hashlib
import math
import os
import random
import time
from collections import OrderedDict

if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():  # no GPU: Triton kernels run in its interpreter
        os.environ["TRITON_INTERPRET"] = "1"

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

import course_config
from llmopt.engine import NO_TOKEN, Engine, KVView, LlamaWeights
from llmopt.kv_errors import DoubleFreeError, OutOfBlocksError
from llmopt.simulator import H100_SXM, H200, LLAMA3_8B, CostModel, HardwareProfile, ModelProfile

SMALL = course_config.SMALL_WORKLOAD  # True under `make test`: shorter measurements
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
_ = torch.manual_seed(0)  # seed the demos; `_ =` keeps the Generator out of the output

# %% [markdown]
# The course model is a small Llama (6 layers, 8 query heads sharing 2 KV heads, head
# dimension 32, RoPE). The engine in `llmopt.engine` runs its forward pass with two seams
# you will fill: an `Attention` function and a `KVCache`. Both speak in **positions**: each
# token carries its position in its sequence, an empty slot carries `NO_TOKEN` (-1), and
#
# $$\text{key } j \text{ is visible to query } i \iff 0 \le \text{pos}[j] \le \text{pos}[i].$$

# %%
from llmopt.models import load_model, load_tokenizer

model = load_model("course-lm")
tokenizer = load_tokenizer("course-lm")
engine = Engine.from_model(model)
W = engine.weights
KV_BYTES_PER_TOKEN = 2 * len(W.layers) * W.n_kv_heads * W.head_dim * 4  # K and V, float32
print(f"{len(W.layers)} layers, {W.n_heads} query heads, {W.n_kv_heads} KV heads, "
      f"head_dim {W.head_dim}: {KV_BYTES_PER_TOKEN / 1024:.1f} KiB of KV per token")

# %% [markdown]
# ## 1. Attention, from scratch
# ### 1. 从零实现注意力
#
# Scaled dot-product attention is $\mathrm{softmax}(QK^\top/\sqrt{d})\,V$ with the
# invisible keys masked out before the softmax. Two details decide whether it is right:
#
# - **The causal mask is a rule on positions, not on indices.** During decoding the query
#   holds one token and the keys hold the whole prefix: query row 0 is at position
#   $T_k - 1$, and `torch.tril(ones(T_q, T_k))` would let it see only key 0.
# - **GQA.** With 8 query heads and 2 KV heads, query heads 0–3 read KV head 0 and 4–7
#   read KV head 1: head $h$ reads KV head $h \,/\!/\, (H / H_{kv})$. That is
#   `repeat_interleave`, not `repeat` (which would send head 1 to KV head 1).
#
# **Exercise 1 · 练习1.** Write `attention`. The oracle is
# `torch.nn.functional.scaled_dot_product_attention`.

# %% nbgrader={"grade": false, "grade_id": "attention_solution", "locked": false, "schema_version": 3, "solution": true}
def attention(query, keys, values, query_positions, key_positions):
    """Scaled dot-product attention under the visibility rule, with GQA heads.

    query:  (B, H, T_q, D); keys, values: (B, H_kv, T_k, D), H a multiple of H_kv;
            query head h reads KV head h // (H // H_kv).
    query_positions: (B, T_q) long; key_positions: (B, T_k) long, NO_TOKEN (-1) = empty.
    Key j is visible to query i iff 0 <= key_positions[j] <= query_positions[i]; T_q may
    be shorter than T_k (decoding). Scores are scaled by D ** -0.5.
    Returns (B, H, T_q, D) in the query's dtype, finite everywhere (a query that sees
    no key at all, e.g. padding, may return anything finite).
    """
    ### BEGIN SOLUTION
    group_size = query.shape[1] // keys.shape[1]  # query heads per KV head
    keys = keys.repeat_interleave(group_size, dim=1)  # (B, H, T_k, D)
    values = values.repeat_interleave(group_size, dim=1)  # (B, H, T_k, D)
    scores = query @ keys.transpose(-1, -2) * query.shape[-1] ** -0.5  # (B, H, T_q, T_k)
    visible = ((key_positions[:, None, :] >= 0)
               & (key_positions[:, None, :] <= query_positions[:, :, None]))  # (B, T_q, T_k)
    scores = scores.masked_fill(~visible[:, None], torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores.float(), dim=-1).to(query.dtype)
    return weights @ values  # (B, H, T_q, D)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "attention", "locked": true, "points": 6, "schema_version": 3, "solution": false}
# Visible checks: prefill (T_q == T_k) and one decode step (T_q = 1), 8 query / 2 KV heads.
_q, _k, _v = torch.randn(2, 8, 5, 16), torch.randn(2, 2, 5, 16), torch.randn(2, 2, 5, 16)
_pos = torch.arange(5).expand(2, 5)
_want = F.scaled_dot_product_attention(_q, _k.repeat_interleave(4, 1), _v.repeat_interleave(4, 1),
                                       is_causal=True)
_got = attention(_q, _k, _v, _pos, _pos)
assert _got.shape == (2, 8, 5, 16), f"expected shape (2, 8, 5, 16), got {tuple(_got.shape)}"
assert torch.allclose(_got, _want, atol=1e-5), \
    "prefill differs from scaled_dot_product_attention(is_causal=True): check the mask and the scale"
_got = attention(_q[:, :, -1:], _k, _v, _pos[:, -1:], _pos)
assert torch.allclose(_got, _want[:, :, -1:], atol=1e-5), \
    "a decode step (one query at position 4) must see all 5 keys: mask by positions, not by indices"
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch05_kv_cache/attention")
### END HIDDEN TESTS

# %% [markdown]
# ## 2. A contiguous KV cache
# ### 2. 连续内存KV缓存
#
# Without a cache, the engine recomputes the keys and values of the whole prefix at every
# step: step $t$ costs a forward pass over $t$ tokens, and $n$ steps cost $O(n^2)$ token
# passes. A cache stores each layer's keys and values once, so a step runs the model on
# one new token and only attention still reads the whole prefix.
#
# The simplest cache preallocates, per layer, buffers of shape
# `(batch, n_kv_heads, max_seq_len, head_dim)` and writes a token's key and value at the
# slot of its **position**. With left-padded batches, rows then line up by position:
# slot $p$ of every row holds the token at position $p$, and a slot never written holds
# `NO_TOKEN`.
#
# **Exercise 2 · 练习2.** Write `ContiguousKVCache` (the engine's `KVCache` seam) and
# `generate_with_cache`, the greedy decoding loop that prefills the prompt once and then
# feeds the engine one token per step, at the right position.

# %% nbgrader={"grade": false, "grade_id": "contiguous_cache_solution", "locked": false, "schema_version": 3, "solution": true}
class ContiguousKVCache:
    """Preallocated per-layer KV buffers; a token is stored at the slot of its position.

    ContiguousKVCache(n_layers, batch_size, n_kv_heads, head_dim, max_seq_len,
                      dtype=torch.float32, device="cpu")
    The engine's KVCache seam: engine.forward calls update() once per layer and step.
    """

    def __init__(self, n_layers, batch_size, n_kv_heads, head_dim, max_seq_len,
                 dtype=torch.float32, device="cpu"):
        """Preallocate every layer's buffers, all slots empty.

        The demos after this exercise use three attributes: keys and values, zeros of
        shape (n_layers, batch_size, n_kv_heads, max_seq_len, head_dim) of `dtype` on
        `device`; and lengths, a list holding each layer's `length` (see update; 0 while
        the layer is empty), which a demo sets to rewind the cache.
        """
        ### BEGIN SOLUTION
        shape = (n_layers, batch_size, n_kv_heads, max_seq_len, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.positions = torch.full((n_layers, batch_size, max_seq_len), NO_TOKEN,
                                    dtype=torch.long, device=device)
        self.lengths = [0] * n_layers  # 1 + the largest position stored, per layer
        self.max_seq_len = max_seq_len
        ### END SOLUTION

    def update(self, layer, keys, values, positions):
        """Store one step's keys and values of `layer`; return the layer's KVView.

        keys, values (B, H_kv, T_new, D); positions (B, T_new) long, NO_TOKEN = padding
        (not stored). Writes each token at slot positions[b, t] of row b, then returns
        views of slots [0, length) where length = 1 + the largest position stored so far
        in this layer: keys/values (B, H_kv, length, D) and positions (B, length) holding
        p at a filled slot p and NO_TOKEN at an empty one. No copies of the whole buffer.
        A position >= max_seq_len raises ValueError.
        """
        ### BEGIN SOLUTION
        top = int(positions.max())  # one read back to the host per call
        if top >= self.max_seq_len:
            raise ValueError(f"position {top} does not fit a cache of "
                             f"max_seq_len={self.max_seq_len}")
        rows, columns = torch.nonzero(positions >= 0, as_tuple=True)  # the real tokens
        slots = positions[rows, columns]
        self.keys[layer, rows, :, slots] = keys[rows, :, columns]  # (N, H_kv, D)
        self.values[layer, rows, :, slots] = values[rows, :, columns]
        self.positions[layer, rows, slots] = slots
        self.lengths[layer] = max(self.lengths[layer], top + 1)
        n = self.lengths[layer]
        return KVView(self.keys[layer, :, :, :n], self.values[layer, :, :, :n],
                      self.positions[layer, :, :n])
        ### END SOLUTION


def generate_with_cache(engine, input_ids, attention_mask=None, max_new_tokens=32):
    """Greedy decoding with a ContiguousKVCache; the same result as engine.generate.

    input_ids (B, T) long, left-padded where attention_mask (B, T) is 0 (None = no padding).
    Prefill the prompt once through engine.forward(ids, positions, cache), then feed one
    token per step at its position (1 + the previous position of its row). Only the last
    token's logits are needed: engine.forward(..., logits_at=torch.tensor([-1])) runs the
    LM head on that token alone. A row that
    emitted engine.eos_token_id continues with engine.pad_token_id; stop when every row
    has (when engine.eos_token_id is None, never stop early).
    Returns (B, T + n) long: the prompt and the n <= max_new_tokens new tokens.
    """
    ### BEGIN SOLUTION
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    w = engine.weights
    batch, prompt_len = input_ids.shape
    cache = ContiguousKVCache(len(w.layers), batch, w.n_kv_heads, w.head_dim,
                              prompt_len + max_new_tokens, dtype=w.embed_tokens.dtype,
                              device=input_ids.device)
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, NO_TOKEN)
    tokens, step_ids, step_positions = input_ids, input_ids, positions
    finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
    last = torch.tensor([-1], device=input_ids.device)  # the one token whose logits we use
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = engine.forward(step_ids, step_positions, cache, logits_at=last)  # (B, 1, V)
            next_token = logits[:, -1].argmax(dim=-1)  # (B,)
            if engine.eos_token_id is not None:
                next_token = next_token.masked_fill(finished, engine.pad_token_id)
                finished |= next_token == engine.eos_token_id
            step_ids = next_token[:, None]  # (B, 1)
            step_positions = step_positions[:, -1:] + 1  # (B, 1): the last column is real
            tokens = torch.cat([tokens, step_ids], dim=1)
            if finished.all():
                break
    return tokens
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "contiguous_cache", "locked": true, "points": 8, "schema_version": 3, "solution": false}
_cache = ContiguousKVCache(n_layers=1, batch_size=1, n_kv_heads=2, head_dim=4, max_seq_len=8)
_view = _cache.update(0, torch.ones(1, 2, 3, 4), torch.ones(1, 2, 3, 4), torch.tensor([[0, 1, 2]]))
assert _view.keys.shape == (1, 2, 3, 4), f"after 3 tokens the view holds 3 slots, got {tuple(_view.keys.shape)}"
_view = _cache.update(0, 2 * torch.ones(1, 2, 1, 4), torch.ones(1, 2, 1, 4), torch.tensor([[3]]))
assert _view.positions.tolist() == [[0, 1, 2, 3]], f"positions of the view: {_view.positions.tolist()}"
assert torch.all(_view.keys[0, :, 3] == 2), "the token at position 3 belongs in slot 3"
_batch = tokenizer(["def main(argv):\n    ", "import os\n"], return_tensors="pt", padding=True)
_want = model.generate(**_batch, do_sample=False, max_new_tokens=16)
_got = generate_with_cache(engine, _batch.input_ids, _batch.attention_mask, max_new_tokens=16)
assert _got.tolist() == _want.tolist(), \
    "tokens differ from transformers generate(do_sample=False): check positions during decode"
print(repr(tokenizer.decode(_got[0], skip_special_tokens=True)))
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch05_kv_cache/contiguous_cache")
### END HIDDEN TESTS

# %% [markdown]
# ### What the cache saves, per token · 每个token节省多少
#
# One decode step at sequence length $L$: without a cache, a forward pass over all $L$
# tokens; with it, a forward pass over one token plus attention over $L$ cached keys.
# The measurement below times both on this machine (median of a few runs each).

# %%
def median_seconds(fn, repeats=5):
    fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def decode_step_seconds(length, cached):
    ids = torch.randint(0, model.config.vocab_size, (1, length))
    positions = torch.arange(length)[None]
    with torch.no_grad():  # inference only
        if not cached:  # recompute: the whole prefix plus the new token
            return median_seconds(lambda: engine.forward(ids, positions))
        cache = ContiguousKVCache(len(W.layers), 1, W.n_kv_heads, W.head_dim, length + 1)
        engine.forward(ids[:, :-1], positions[:, :-1], cache)  # prefill length - 1 tokens

        def one_step():
            cache.lengths = [length - 1] * len(W.layers)  # rewind: the step rewrites one slot
            engine.forward(ids[:, -1:], positions[:, -1:], cache)
        return median_seconds(one_step)


lengths = [32, 64, 128, 256] if SMALL else [32, 64, 128, 256, 384, 512]
recompute_s = [decode_step_seconds(n, cached=False) for n in lengths]
cached_s = [decode_step_seconds(n, cached=True) for n in lengths]
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(lengths, [1e3 * s for s in recompute_s], "o-", label="recompute (no cache)")
ax.plot(lengths, [1e3 * s for s in cached_s], "o-", label="contiguous KV cache")
ax.set(xlabel="sequence length", ylabel="ms per decoded token", yscale="log",
       title=f"Per-token decode latency, course model, {torch.get_num_threads()} CPU threads")
ax.grid(True, which="both", alpha=0.3)
ax.legend()
plt.show()
CACHE_SPEEDUP = recompute_s[-1] / cached_s[-1]
print(f"at length {lengths[-1]}: {1e3 * recompute_s[-1]:.1f} ms vs {1e3 * cached_s[-1]:.2f} ms "
      f"per token, {CACHE_SPEEDUP:.0f}x")

# %% [markdown]
# The price of the contiguous cache is memory: it must reserve `max_seq_len` slots per
# request up front, because it cannot know how long the answer will be. The plot below
# takes a trace of requests of mixed lengths and counts, for a contiguous cache that
# reserves the model's maximum length, how much of the reserved KV memory holds tokens.

# %%
MAX_LEN, BLOCK_SIZE = 512, 16
rng = np.random.default_rng(5)
trace_lengths = np.clip(rng.lognormal(mean=4.6, sigma=0.7, size=200), 8, MAX_LEN).astype(int)
used = trace_lengths.sum()
contiguous_reserved = len(trace_lengths) * MAX_LEN
paged_reserved = (np.ceil(trace_lengths / BLOCK_SIZE) * BLOCK_SIZE).sum()
fig, ax = plt.subplots(figsize=(7, 3.5))
bars = {"contiguous, max-length\nreservation": contiguous_reserved,
        f"paged, blocks of {BLOCK_SIZE}": paged_reserved}
for i, (name, reserved) in enumerate(bars.items()):
    ax.barh(i, used * KV_BYTES_PER_TOKEN / 2**20, color="tab:green", label="tokens" if i == 0 else None)
    ax.barh(i, (reserved - used) * KV_BYTES_PER_TOKEN / 2**20, left=used * KV_BYTES_PER_TOKEN / 2**20,
            color="tab:red", label="reserved, unused" if i == 0 else None)
    ax.text(reserved * KV_BYTES_PER_TOKEN / 2**20, i, f"  {1 - used / reserved:.0%} wasted", va="center")
ax.set_yticks(range(len(bars)), list(bars))
ax.set(xlabel="KV memory (MiB)", title=f"{len(trace_lengths)} requests, median length "
       f"{int(np.median(trace_lengths))} tokens, max {MAX_LEN}")
ax.legend(loc="lower right")
plt.show()

# %% [markdown]
# The synthetic trace's number is an illustration of the mechanism; the measured numbers
# come from the vLLM paper: existing systems stored actual token states in "only 20.4%–38.2%
# of the KV cache memory" [@kwon2023-vllm], and paging wastes under 4 %, only in
# each sequence's last block. Paging is what the next three exercises build.
#
# ## 3. A block allocator
# ### 3. 块分配器
#
# Paging splits KV memory into a fixed pool of **blocks** of `block_size` token slots.
# A sequence owns a list of blocks, its **block table**, and grows one block at a time, so
# at most `block_size - 1` slots per sequence are ever wasted. Blocks can be *shared*:
# a forked sequence (parallel sampling, beam search) or a common prompt prefix points at
# the same blocks. So each block carries a **reference count**; it returns to the free
# pool when the count drops to zero, and never before.
#
# **Exercise 3 · 练习3.** Write `BlockAllocator`. Its failures raise the course's own
# exceptions (from `llmopt.kv_errors`), with messages that say what happened.

# %% nbgrader={"grade": false, "grade_id": "block_allocator_solution", "locked": false, "schema_version": 3, "solution": true}
class BlockAllocator:
    """A fixed pool of KV blocks, numbered 0 .. num_blocks - 1, with reference counts.

    BlockAllocator(num_blocks). Failures raise the course's exceptions (OutOfBlocksError,
    DoubleFreeError) or ValueError, with messages that say what happened. A block id
    outside [0, num_blocks) raises ValueError everywhere.
    """

    def __init__(self, num_blocks):
        """A pool of num_blocks blocks, all free (reference count 0)."""
        ### BEGIN SOLUTION
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.num_blocks = num_blocks
        self.ref_counts = [0] * num_blocks
        self.free_blocks = list(range(num_blocks - 1, -1, -1))  # a stack: pop() gives 0 first
        ### END SOLUTION

    @property
    def num_free(self):
        """The number of free blocks."""
        ### BEGIN SOLUTION
        return len(self.free_blocks)
        ### END SOLUTION

    def _check(self, block):
        """Raise ValueError unless `block` is an int in [0, num_blocks). A helper for
        fork, free and ref_count; optional."""
        ### BEGIN SOLUTION
        if not (isinstance(block, int) and 0 <= block < self.num_blocks):
            raise ValueError(f"block {block!r} is not a block id in [0, {self.num_blocks})")
        ### END SOLUTION

    def allocate(self):
        """A free block, now with reference count 1; OutOfBlocksError when none is free."""
        ### BEGIN SOLUTION
        if not self.free_blocks:
            raise OutOfBlocksError(f"all {self.num_blocks} KV blocks are in use: free a "
                                   f"sequence or preempt one before allocating")
        block = self.free_blocks.pop()
        self.ref_counts[block] = 1
        return block
        ### END SOLUTION

    def fork(self, block):
        """One more reference to an allocated block; returns the same id. ValueError if
        the block is not allocated."""
        ### BEGIN SOLUTION
        self._check(block)
        if self.ref_counts[block] == 0:
            raise ValueError(f"block {block} is free: only an allocated block can be shared")
        self.ref_counts[block] += 1
        return block
        ### END SOLUTION

    def free(self, block):
        """Drop one reference; the block is free again when none is left. Freeing a block
        that is not allocated raises DoubleFreeError."""
        ### BEGIN SOLUTION
        self._check(block)
        if self.ref_counts[block] == 0:
            raise DoubleFreeError(f"block {block} is already free: it was freed more times "
                                  f"than it was referenced")
        self.ref_counts[block] -= 1
        if self.ref_counts[block] == 0:
            self.free_blocks.append(block)
        ### END SOLUTION

    def ref_count(self, block):
        """The block's reference count: 0 for a free block."""
        ### BEGIN SOLUTION
        self._check(block)
        return self.ref_counts[block]
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "block_allocator", "locked": true, "points": 6, "schema_version": 3, "solution": false}
_alloc = BlockAllocator(2)
_a = _alloc.allocate()
_b = _alloc.allocate()
assert _a != _b and _alloc.num_free == 0, "two allocations from a pool of 2 give two distinct blocks"
try:
    _alloc.allocate()
except OutOfBlocksError as error:
    print("OutOfBlocksError as expected:", error)
else:
    raise AssertionError("allocating from an empty pool must raise OutOfBlocksError")
_alloc.fork(_a)
assert _alloc.ref_count(_a) == 2, "fork adds a reference"
_alloc.free(_a)
assert _alloc.num_free == 0, "a block still referenced once is not free"
_alloc.free(_a)
assert _alloc.num_free == 1 and _alloc.ref_count(_a) == 0, "the last free returns the block"
try:
    _alloc.free(_a)
except DoubleFreeError as error:
    print("DoubleFreeError as expected:", error)
else:
    raise AssertionError("freeing a free block must raise DoubleFreeError")
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch05_kv_cache/block_allocator")
### END HIDDEN TESTS

# %% [markdown]
# ## 4. A paged KV cache
# ### 4. 分页KV缓存
#
# The paged cache keeps one pool per layer, `key_cache[layer]` of shape
# `(num_blocks, block_size, n_kv_heads, head_dim)` (and the same for values). A token's
# **slot** is a flat index into the pool, `block * block_size + offset`; the **slot
# mapping** of a step lists the slot of each new token, so one scatter writes them all.
# A new block is needed exactly when a sequence's length reaches a multiple of
# `block_size`.
#
# Forking shares every block of the parent, including a partly filled last block. The
# first sequence to append into a shared partial block must **copy it first**
# (copy-on-write): allocate a fresh block, copy the filled slots of every layer, drop its
# reference to the shared one. Otherwise the two sequences overwrite each other's tokens.
#
# **Exercise 4 · 练习4.** Write `PagedKVCache` on top of your `BlockAllocator`.

# %% nbgrader={"grade": false, "grade_id": "paged_cache_solution", "locked": false, "schema_version": 3, "solution": true}
class PagedKVCache:
    """KV memory in fixed blocks, with per-sequence block tables and copy-on-write forks.

    PagedKVCache(num_blocks, block_size, n_layers, n_kv_heads, head_dim, dtype=torch.float32)
    Sequences are named by seq_id (any hashable). Unknown seq_ids raise KeyError; running
    out of blocks raises OutOfBlocksError.
    """

    def __init__(self, num_blocks, block_size, n_layers, n_kv_heads, head_dim,
                 dtype=torch.float32):
        """No sequences yet. Attributes: allocator (a BlockAllocator over the num_blocks
        blocks), block_size, key_cache and value_cache: zeros of shape
        (n_layers, num_blocks, block_size, n_kv_heads, head_dim) and `dtype`."""
        ### BEGIN SOLUTION
        self.allocator = BlockAllocator(num_blocks)
        self.block_size = block_size
        shape = (n_layers, num_blocks, block_size, n_kv_heads, head_dim)
        self.key_cache = torch.zeros(shape, dtype=dtype)
        self.value_cache = torch.zeros(shape, dtype=dtype)
        self.block_tables = {}  # seq_id -> list of block ids
        self.seq_lens = {}  # seq_id -> tokens stored
        ### END SOLUTION

    def add_sequence(self, seq_id):
        """A new, empty sequence (ValueError if seq_id exists)."""
        ### BEGIN SOLUTION
        if seq_id in self.block_tables:
            raise ValueError(f"sequence {seq_id!r} already exists")
        self.block_tables[seq_id], self.seq_lens[seq_id] = [], 0
        ### END SOLUTION

    def _copy_on_write(self, seq_id):
        """If the sequence's last block is partly filled and shared, replace it in its
        block table by a fresh block holding a copy of its filled slots (every layer),
        and drop one reference to the shared one. A helper for append_slots; optional."""
        ### BEGIN SOLUTION
        table, filled = self.block_tables[seq_id], self.seq_lens[seq_id] % self.block_size
        shared = table[-1]
        if filled == 0 or self.allocator.ref_count(shared) == 1:
            return  # the last block is full (never written again) or ours alone
        fresh = self.allocator.allocate()
        self.key_cache[:, fresh, :filled] = self.key_cache[:, shared, :filled]
        self.value_cache[:, fresh, :filled] = self.value_cache[:, shared, :filled]
        self.allocator.free(shared)
        table[-1] = fresh
        ### END SOLUTION

    def append_slots(self, seq_id, n):
        """Reserve slots for n more tokens; return their slot mapping (a list of ints).

        slot = block * block_size + offset. Blocks are allocated only when needed (a
        sequence of length L holds ceil(L / block_size) blocks), all or nothing. A shared,
        partly filled last block is copied first (copy-on-write, all layers).
        """
        ### BEGIN SOLUTION
        table, length = self.block_tables[seq_id], self.seq_lens[seq_id]
        if n > 0 and table:
            self._copy_on_write(seq_id)
        needed = -(-(length + n) // self.block_size) - len(table)  # ceil division
        new_blocks = []
        try:
            for _ in range(needed):
                new_blocks.append(self.allocator.allocate())
        except OutOfBlocksError:
            for block in new_blocks:  # all or nothing
                self.allocator.free(block)
            raise
        table.extend(new_blocks)
        self.seq_lens[seq_id] = length + n
        return [table[p // self.block_size] * self.block_size + p % self.block_size
                for p in range(length, length + n)]
        ### END SOLUTION

    def write(self, layer, slot_mapping, keys, values):
        """Store keys, values (n, n_kv_heads, head_dim) of `layer` at the n slots."""
        ### BEGIN SOLUTION
        slots = torch.as_tensor(slot_mapping, dtype=torch.long)
        self.key_cache[layer].view(-1, *self.key_cache.shape[-2:])[slots] = keys
        self.value_cache[layer].view(-1, *self.value_cache.shape[-2:])[slots] = values
        ### END SOLUTION

    def block_table(self, seq_id):
        """The sequence's block ids, in order: a list[int]."""
        ### BEGIN SOLUTION
        return list(self.block_tables[seq_id])
        ### END SOLUTION

    def seq_len(self, seq_id):
        """The number of tokens the sequence holds slots for."""
        ### BEGIN SOLUTION
        return self.seq_lens[seq_id]
        ### END SOLUTION

    def gather(self, layer, seq_id):
        """(keys, values) of the sequence in `layer`, each (seq_len, n_kv_heads, head_dim)."""
        ### BEGIN SOLUTION
        length, table = self.seq_lens[seq_id], torch.tensor(self.block_tables[seq_id], dtype=torch.long)
        keys = self.key_cache[layer, table].flatten(0, 1)[:length]  # (L, H_kv, D)
        values = self.value_cache[layer, table].flatten(0, 1)[:length]
        return keys, values
        ### END SOLUTION

    def fork(self, parent_id, child_id):
        """child_id shares all of parent_id's blocks (one more reference each) and its
        length."""
        ### BEGIN SOLUTION
        if child_id in self.block_tables:
            raise ValueError(f"sequence {child_id!r} already exists")
        table = self.block_tables[parent_id]
        self.block_tables[child_id] = [self.allocator.fork(b) for b in table]
        self.seq_lens[child_id] = self.seq_lens[parent_id]
        ### END SOLUTION

    def free(self, seq_id):
        """Drop the sequence and one reference to each of its blocks."""
        ### BEGIN SOLUTION
        for block in self.block_tables.pop(seq_id):
            self.allocator.free(block)
        del self.seq_lens[seq_id]
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "paged_cache", "locked": true, "points": 8, "schema_version": 3, "solution": false}
_paged = PagedKVCache(num_blocks=8, block_size=4, n_layers=1, n_kv_heads=1, head_dim=2)
_paged.add_sequence("a")
_slots = _paged.append_slots("a", 6)
assert len(_paged.block_table("a")) == 2, "6 tokens in blocks of 4 need exactly 2 blocks"
_b0, _b1 = _paged.block_table("a")
assert _slots == [_b0 * 4, _b0 * 4 + 1, _b0 * 4 + 2, _b0 * 4 + 3, _b1 * 4, _b1 * 4 + 1], \
    f"slot = block * block_size + offset, got {_slots}"
_paged.write(0, _slots, torch.arange(6.0)[:, None, None].expand(6, 1, 2), torch.zeros(6, 1, 2))
_paged.fork("a", "b")
_paged.write(0, _paged.append_slots("b", 1), torch.full((1, 1, 2), 99.0), torch.zeros(1, 1, 2))
assert _paged.gather(0, "a")[0][:, 0, 0].tolist() == [0, 1, 2, 3, 4, 5], \
    "writing to the fork changed the parent: copy the shared partial block before appending"
assert _paged.gather(0, "b")[0][:, 0, 0].tolist() == [0, 1, 2, 3, 4, 5, 99]
_paged.free("a")
_paged.free("b")
assert _paged.allocator.num_free == 8, "every block is free again once every sequence is freed"
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch05_kv_cache/paged_cache")
### END HIDDEN TESTS

# %% [markdown]
# ### A block table, drawn · 块表示意图
#
# Three sequences in one pool of 16 blocks of 4 slots: `b` is a fork of `a` that has
# written one token since (its last block is a private copy), `c` arrived later. Blocks
# are not contiguous, and the only waste is the unfilled tail of each sequence's last block.

# %%
demo = PagedKVCache(num_blocks=16, block_size=4, n_layers=1, n_kv_heads=1, head_dim=1)
demo.allocator.allocate()  # block 0 taken by someone else, to make the layout less tidy
for seq, n in (("a", 6), ("c", 9)):
    demo.add_sequence(seq)
    demo.append_slots(seq, n)
demo.fork("a", "b")
demo.append_slots("b", 1)
colors = {"a": "tab:blue", "b": "tab:orange", "c": "tab:green"}
fig, ax = plt.subplots(figsize=(9, 2.6))
for seq in ("a", "b", "c"):
    length = demo.seq_len(seq)
    for index, block in enumerate(demo.block_table(seq)):
        filled = min(4, length - 4 * index)
        shared = demo.allocator.ref_count(block) > 1
        for slot in range(4):
            ax.add_patch(plt.Rectangle((block * 4 + slot, 0), 0.95, 0.9, alpha=1.0 if slot < filled else 0.2,
                                       color="tab:purple" if shared else colors[seq]))
    print(f"sequence {seq}: length {length:2d}, block table {demo.block_table(seq)}")
ax.set(xlim=(0, 64), ylim=(0, 1), yticks=[], xlabel="slot in the pool (block * 4 + offset)",
       title="Blue a, orange b (fork of a), green c; purple = shared by a and b; faded = reserved, empty")
for block in range(17):
    ax.axvline(4 * block - 0.025, color="black", linewidth=0.5)
plt.show()

# %% [markdown]
# ## 5. Paged attention
# ### 5. 分页注意力
#
# Attention must now read keys and values through the block table. In PyTorch, the direct
# way is to gather each sequence's blocks into a dense tensor and run ordinary attention;
# the price is a copy of the whole context per step. A kernel avoids the copy: it walks
# the block table itself and reads each block where it lies, keeping a running softmax
# (maximum, normaliser, weighted sum) so it never needs all the scores at once.
#
# The decode case is the one that matters: one query token per sequence, attending to all
# `context_lens[b]` tokens of its sequence (no mask beyond the length: they are all in
# the past).
#
# **Exercise 5a · 练习5a.** Write `paged_attention` in PyTorch.

# %% nbgrader={"grade": false, "grade_id": "paged_attention_solution", "locked": false, "schema_version": 3, "solution": true}
def paged_attention(query, key_cache, value_cache, block_tables, context_lens):
    """Decode attention of one query token per sequence over its paged KV.

    query: (B, H, D); key_cache, value_cache: (num_blocks, block_size, H_kv, D), one layer;
    block_tables: (B, max_blocks) long, entries past a sequence's blocks are arbitrary
    (e.g. -1); context_lens: (B,) long, >= 1. Sequence b's token t lives at
    key_cache[block_tables[b, t // block_size], t % block_size]. Slots at or past
    context_lens[b] may hold anything, even NaN: they must not change the output.
    Query head h reads KV head h // (H // H_kv); scores are scaled by D ** -0.5.
    Returns (B, H, D) in the query's dtype.
    """
    ### BEGIN SOLUTION
    batch, n_heads, head_dim = query.shape
    block_size, n_kv_heads = key_cache.shape[1], key_cache.shape[2]
    max_len = block_tables.shape[1] * block_size
    tables = block_tables.clamp(min=0)  # unused entries: read any block, masked below
    keys = key_cache[tables].flatten(1, 2)  # (B, max_len, H_kv, D)
    values = value_cache[tables].flatten(1, 2)
    group = n_heads // n_kv_heads
    query = query.view(batch, n_kv_heads, group, head_dim)  # head h -> (h // group, h % group)
    scores = torch.einsum("bkgd,btkd->bkgt", query, keys) * head_dim ** -0.5  # (B, H_kv, G, T)
    valid = torch.arange(max_len, device=query.device)[None] < context_lens[:, None]  # (B, T)
    scores = scores.masked_fill(~valid[:, None, None], float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(query.dtype)
    # A weight of 0 does not hide an unused slot: 0 * NaN is NaN. Zero those values too.
    values = values.masked_fill(~valid[:, :, None, None], 0.0)
    out = torch.einsum("bkgt,btkd->bkgd", weights, values)  # (B, H_kv, G, D)
    return out.reshape(batch, n_heads, head_dim)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "paged_attention", "locked": true, "points": 6, "schema_version": 3, "solution": false}
def dense_decode_attention(query, keys, values):
    """The oracle for one sequence: query (H, D), keys/values (T, H_kv, D) -> (H, D)."""
    group = query.shape[0] // keys.shape[1]
    k = keys.permute(1, 0, 2).repeat_interleave(group, 0)  # (H, T, D)
    v = values.permute(1, 0, 2).repeat_interleave(group, 0)
    return F.scaled_dot_product_attention(query[:, None], k, v)[:, 0]


_kc, _vc = torch.randn(10, 4, 2, 8), torch.randn(10, 4, 2, 8)
_tables = torch.tensor([[7, 2, 5], [3, 9, -1]])  # non-contiguous blocks; -1 = unused
_lens = torch.tensor([10, 5])  # both last blocks partly filled
_q = torch.randn(2, 8, 8)
_out = paged_attention(_q, _kc, _vc, _tables, _lens)
_kc_nan, _vc_nan = _kc.clone(), _vc.clone()
_kc_nan[5, 2:], _vc_nan[5, 2:], _kc_nan[9, 1:], _vc_nan[9, 1:] = (float("nan"),) * 4  # unused slots
assert torch.isfinite(paged_attention(_q, _kc_nan, _vc_nan, _tables, _lens)).all(), \
    "NaN in a slot past the context length reached the output: 0 * NaN = NaN, so zero the unused values"
assert torch.equal(paged_attention(_q, _kc_nan, _vc_nan, _tables, _lens), _out), \
    "the content of unused slots changed the output"
assert _out.shape == (2, 8, 8), f"expected (B, H, D) = (2, 8, 8), got {tuple(_out.shape)}"
for _b in range(2):
    _blocks = _tables[_b][_tables[_b] >= 0]
    _k = _kc[_blocks].flatten(0, 1)[:_lens[_b]]
    _v = _vc[_blocks].flatten(0, 1)[:_lens[_b]]
    assert torch.allclose(_out[_b], dense_decode_attention(_q[_b], _k, _v), atol=1e-5), \
        f"sequence {_b} differs from dense attention on the same keys: check the gather and the length mask"
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch05_kv_cache/paged_attention")
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 5b · 练习5b.** The same contract as a Triton kernel, designed around what
# decode attention costs. With one query token per sequence, each key or value element
# read from memory feeds one multiply-add per query head that shares it: $G$ FLOP per
# byte of fp16 for a group of $G$ heads, against the ~295 FLOP per byte at which an H100
# stops being bound by memory [@nvidia-h100-datasheet]. The kernel is bound by reading K
# and V, and its figure of merit is how many of those bytes it reads per second. Two
# decisions follow, the ones Flash-Decoding [@dao2023-flashdecoding] and vLLM's second
# paged-attention kernel [@vllm-paged-attention-v2] make:
#
# 1. **One program per KV head, for its whole query group.** Under GQA the
#    $G = H / H_{kv}$ query heads of a KV head read the same keys and values. A program
#    per query head loads every block $G$ times; a program per KV head loads a tile of
#    keys once and scores all $G$ queries against it as one small matrix product,
#    $(G \times D) \cdot (D \times T)$. `tl.dot` wants at least 16 rows, so the group is
#    padded to 16 query rows of zeros that are never stored (and `head_dim` to a power of
#    two, at least 16, with the extra columns masked).
# 2. **Split the context (split-KV).** Batch 8 with 8 KV heads is 64 (sequence, KV head)
#    pairs, fewer than the 132 SMs of an H100 [@nvidia-h100-datasheet]: one program per
#    pair leaves half the chip idle, and each program streams 8k tokens alone. Cut the
#    context into partitions (512 tokens, halved while the grid is still smaller than
#    about 4 programs per SM) and give each (sequence, KV head, partition) its own
#    program. A partition runs the online softmax over its tiles and writes, per query
#    head, its normalised output $o_p$, its maximum score $m_p$ and its normaliser
#    $\ell_p = \sum_t e^{s_t - m_p}$. A second, small kernel merges the partitions, the
#    online softmax one level up:
#
# $$M = \max_p m_p, \qquad o = \frac{\sum_p \ell_p\, e^{m_p - M}\, o_p}{\sum_p \ell_p\, e^{m_p - M}}.$$
#
# The partials are written once and read once, $2 \cdot 4 G D$ bytes per partition
# against the $2 \cdot 512 \cdot 2D$ bytes of fp16 keys and values it reads: $G/256$,
# 1.6 % at $G = 4$.
#
# Two details decide correctness. The slots of a last block past the context length may
# hold anything, NaN included: mask the *loaded* keys and values (`other=0.0`), not only
# the scores, because $0 \cdot \text{NaN} = \text{NaN}$ in $pV$. And the end of a
# partition or of the context is rarely a whole tile: mask by token position.
#
# **What to expect.** Decode attention can read K/V at close to the memory's bandwidth
# on long contexts (FlashInfer reports close to 100 % [@ye2024-flashinfer]). The goal set
# for this chapter's reference kernel is 70 % of the copy bandwidth that
# `llmopt.device.calibrate()` measures, at 8k context; the last cell of this section
# measures it when a GPU is present. On a GPU the grader times your kernel against the
# reference in the same run, on the same card, and asks for at least half its bandwidth.
#
# The cell gives both kernels' signatures and a launcher that refuses to launch a kernel
# that still holds its stub: a `raise` inside `@triton.jit` is a compile error on a GPU,
# not a message. Without a GPU it all runs in Triton's interpreter (`TRITON_INTERPRET=1`,
# set by the setup cell): slow, but the same code, with one known difference: the
# interpreter multiplies bfloat16 wrongly in `tl.dot` (numpy has no bfloat16), so on the
# CPU compute bfloat16 inputs in float32. The tests use powers of two for `block_size` and
# `head_dim`, group sizes from 1 to 8, and float32 and float16 (bfloat16 too on a GPU).

# %% nbgrader={"grade": false, "grade_id": "paged_attention_triton_solution", "locked": false, "schema_version": 3, "solution": true}
def is_stub(kernel) -> bool:
    """True while a @triton.jit kernel's body is still the exercise's `raise NotImplementedError()`."""
    return "NotImplementedError" in kernel.fn.__code__.co_names


@triton.jit
def paged_attention_partition_kernel(
        query_ptr, key_ptr, value_ptr, table_ptr, lens_ptr,  # the inputs, as in paged_attention
        part_out_ptr, part_max_ptr, part_sum_ptr,  # (B, H, n_partitions, D), (B, H, n_partitions) x 2
        scale, n_heads, group_size, max_blocks, partition_size, n_partitions,
        stride_block, stride_slot, stride_head,
        BLOCK_SIZE: tl.constexpr, HEAD_DIM: tl.constexpr, TILE: tl.constexpr,
        GROUP_PAD: tl.constexpr, DIM_PAD: tl.constexpr):
    """One program: sequence program_id(0), KV head program_id(1), context partition
    program_id(2) (tokens [partition * partition_size, +partition_size)). It reads each key
    and value of its partition once, for all `group_size` query heads that share the KV head,
    and writes per query head: the partition's softmax-weighted values (normalised), its
    maximum score and its normaliser sum(exp(score - maximum))."""
    ### BEGIN SOLUTION
    seq, kv_head, partition = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    length = tl.load(lens_ptr + seq)
    start = partition * partition_size
    if start >= length:  # a shorter sequence than the longest: nothing to read here
        return
    end = tl.minimum(start + partition_size, length)

    rows = tl.arange(0, GROUP_PAD)  # the query heads of this KV head, padded to tl.dot's 16 rows
    dims = tl.arange(0, DIM_PAD)  # head_dim, padded to a power of two (>= 16)
    row_ok, dim_ok = rows < group_size, dims < HEAD_DIM
    heads = kv_head * group_size + rows  # (GROUP_PAD,) query head numbers
    q = tl.load(query_ptr + (seq * n_heads + heads)[:, None] * HEAD_DIM + dims[None, :],
                mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
    q = q.to(key_ptr.dtype.element_ty)  # (GROUP_PAD, DIM_PAD); tl.dot wants one dtype

    running_max = tl.full([GROUP_PAD], float("-inf"), tl.float32)
    normaliser = tl.zeros([GROUP_PAD], tl.float32)
    acc = tl.zeros([GROUP_PAD, DIM_PAD], tl.float32)
    for tile_start in range(start, end, TILE):
        tokens = tile_start + tl.arange(0, TILE)  # (TILE,) positions in the sequence
        valid = tokens < end
        blocks = tl.load(table_ptr + seq * max_blocks + tokens // BLOCK_SIZE, mask=valid, other=0)
        rows_kv = blocks.to(tl.int64) * stride_block + (tokens % BLOCK_SIZE) * stride_slot + kv_head * stride_head
        offsets = rows_kv[:, None] + dims[None, :]  # (TILE, DIM_PAD)
        # Masked on the loaded values, not only on the scores: an unused slot may hold
        # anything, NaN included, and 0 * NaN = NaN in p @ V.
        kv_mask = valid[:, None] & dim_ok[None, :]
        k = tl.load(key_ptr + offsets, mask=kv_mask, other=0.0)
        v = tl.load(value_ptr + offsets, mask=kv_mask, other=0.0)
        scores = tl.dot(q, tl.trans(k), input_precision="ieee") * scale  # (GROUP_PAD, TILE), fp32
        scores = tl.where(valid[None, :], scores, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, axis=1))  # finite: a tile has a valid token
        rescale = tl.exp(running_max - new_max)  # what the old terms are worth now
        p = tl.exp(scores - new_max[:, None])
        normaliser = normaliser * rescale + tl.sum(p, axis=1)
        acc = acc * rescale[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
        running_max = new_max

    slots = (seq * n_heads + heads) * n_partitions + partition  # (GROUP_PAD,)
    tl.store(part_out_ptr + slots[:, None] * HEAD_DIM + dims[None, :], acc / normaliser[:, None],
             mask=row_ok[:, None] & dim_ok[None, :])
    tl.store(part_max_ptr + slots, running_max, mask=row_ok)
    tl.store(part_sum_ptr + slots, normaliser, mask=row_ok)
    ### END SOLUTION


@triton.jit
def paged_attention_combine_kernel(
        part_out_ptr, part_max_ptr, part_sum_ptr, lens_ptr, out_ptr,
        n_heads, partition_size, n_partitions,
        HEAD_DIM: tl.constexpr, DIM_PAD: tl.constexpr, PARTS: tl.constexpr):
    """One program: sequence program_id(0), query head program_id(1). Merges the results of
    the sequence's partitions, PARTS of them per step (the online softmax once more), and
    writes out[seq, head] (B, H, D) in out's dtype."""
    ### BEGIN SOLUTION
    seq, head = tl.program_id(0), tl.program_id(1)
    n_used = tl.cdiv(tl.load(lens_ptr + seq), partition_size)  # partitions that hold tokens
    dims = tl.arange(0, DIM_PAD)
    dim_ok = dims < HEAD_DIM
    first = (seq * n_heads + head) * n_partitions  # this head's partition 0 in the buffers

    running_max = tl.full([1], float("-inf"), tl.float32)
    total = tl.zeros([1], tl.float32)
    acc = tl.zeros([DIM_PAD], tl.float32)
    for step in range(0, n_used, PARTS):  # PARTS partitions per step, their loads in flight together
        parts = step + tl.arange(0, PARTS)
        used = parts < n_used
        part_max = tl.load(part_max_ptr + first + parts, mask=used, other=float("-inf"))  # (PARTS,)
        part_sum = tl.load(part_sum_ptr + first + parts, mask=used, other=0.0)
        part_out = tl.load(part_out_ptr + (first + parts)[:, None] * HEAD_DIM + dims[None, :],
                           mask=used[:, None] & dim_ok[None, :], other=0.0)  # (PARTS, DIM_PAD)
        new_max = tl.maximum(running_max, tl.max(part_max, axis=0))  # finite: step 0 has a partition
        weights = part_sum * tl.exp(part_max - new_max)  # each partition's share of the softmax mass
        rescale = tl.exp(running_max - new_max)
        acc = acc * rescale + tl.sum(weights[:, None] * part_out, axis=0)
        total = total * rescale + tl.sum(weights, axis=0)
        running_max = new_max
    tl.store(out_ptr + (seq * n_heads + head) * HEAD_DIM + dims, (acc / total).to(out_ptr.dtype.element_ty),
             mask=dim_ok)
    ### END SOLUTION


def paged_attention_triton(query, key_cache, value_cache, block_tables, context_lens, *,
                           tokens_per_tile=64, max_partition=512, num_warps=4):
    """paged_attention's contract, computed by the two kernels above: the partition kernel
    on a (B, H_kv, n_partitions) grid, then the combine kernel on (B, H). The keyword
    arguments are tuning knobs (powers of two); the grader never passes them."""
    for kernel in (paged_attention_partition_kernel, paged_attention_combine_kernel):
        if is_stub(kernel):  # inside @triton.jit a `raise` is a GPU compile error: say it here
            raise NotImplementedError(f"{kernel.fn.__name__} is still the stub: write it first (exercise 5b)")
    ### BEGIN SOLUTION
    batch, n_heads, head_dim = query.shape
    block_size, n_kv_heads = key_cache.shape[1], key_cache.shape[2]
    group_size = n_heads // n_kv_heads
    assert key_cache.stride() == value_cache.stride() and key_cache.stride(3) == 1
    query, block_tables = query.contiguous(), block_tables.contiguous()
    out = torch.empty_like(query)  # (B, H, D) in the query's dtype
    if not query.is_cuda and key_cache.dtype == torch.bfloat16:
        # Triton's CPU interpreter multiplies bf16 in tl.dot as raw bits (numpy has no
        # bf16): there, and only there, compute in float32.
        query, key_cache, value_cache = query.float(), key_cache.float(), value_cache.float()
    # Tuning from first principles (measure it with `make gpu-check`). A tile of 64 tokens
    # is 16 KiB of fp16 keys and 16 KiB of values at head_dim 128: enough bytes in flight
    # per loop step to hide memory latency with a few programs per SM, few enough
    # registers for 4 warps. Split the context until the grid has about 4 programs per SM
    # (batch 8 with 8 KV heads is only 64 (sequence, KV head) pairs for an H100's 132
    # SMs), keeping each partition at least two tiles long so that a program streams. The
    # longest context comes from the table's width: context_lens.max() would sync the device.
    max_len = block_tables.shape[1] * block_size
    sms = torch.cuda.get_device_properties(query.device).multi_processor_count if query.is_cuda else 4
    partition_size = max_partition
    while partition_size > 2 * tokens_per_tile and \
            batch * n_kv_heads * triton.cdiv(max_len, partition_size) < 4 * sms:
        partition_size //= 2
    n_partitions = triton.cdiv(max_len, partition_size)
    part_out = torch.empty(batch, n_heads, n_partitions, head_dim, dtype=torch.float32, device=query.device)
    part_max = torch.empty(batch, n_heads, n_partitions, dtype=torch.float32, device=query.device)
    part_sum = torch.empty_like(part_max)
    shapes = dict(HEAD_DIM=head_dim, DIM_PAD=max(16, triton.next_power_of_2(head_dim)), num_warps=num_warps)
    paged_attention_partition_kernel[(batch, n_kv_heads, n_partitions)](
        query, key_cache, value_cache, block_tables, context_lens, part_out, part_max, part_sum,
        head_dim ** -0.5, n_heads, group_size, block_tables.shape[1], partition_size, n_partitions,
        key_cache.stride(0), key_cache.stride(1), key_cache.stride(2),
        BLOCK_SIZE=block_size, TILE=tokens_per_tile, GROUP_PAD=max(16, triton.next_power_of_2(group_size)),
        **shapes)
    paged_attention_combine_kernel[(batch, n_heads)](
        part_out, part_max, part_sum, context_lens, out, n_heads, partition_size, n_partitions,
        PARTS=32, **shapes)
    return out
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "paged_attention_triton", "locked": true, "points": 4, "schema_version": 3, "solution": false}
def gathered_attention(query, key_cache, value_cache, block_tables, context_lens):
    """The oracle: gather each sequence's first context_lens[b] tokens, then sdpa (float32)."""
    block_size, out = key_cache.shape[1], []
    for b, length in enumerate(context_lens.tolist()):
        tokens = torch.arange(length)
        blocks = block_tables[b, tokens // block_size]
        k = key_cache[blocks, tokens % block_size].float().transpose(0, 1)  # (H_kv, T, D)
        v = value_cache[blocks, tokens % block_size].float().transpose(0, 1)
        out.append(F.scaled_dot_product_attention(query[b, :, None].float(), k, v, enable_gqa=True)[:, 0])
    return torch.stack(out)  # (B, H, D)


_gen = torch.Generator().manual_seed(55)
for _dtype, _heads, _kv_heads, _atol in ((torch.float32, 8, 2, 1e-4), (torch.float16, 4, 4, 2e-2)):
    _kc5 = torch.randn(12, 4, _kv_heads, 32, generator=_gen).to(_dtype)  # 12 blocks of 4 slots
    _vc5 = torch.randn(12, 4, _kv_heads, 32, generator=_gen).to(_dtype)
    _tables5 = torch.tensor([[7, 2, 5, 11], [3, 9, -1, -1], [0, -1, -1, -1]])  # -1 = unused
    _lens5 = torch.tensor([14, 5, 1])  # every last block partly filled...
    for _block, _used in ((11, 2), (9, 1), (0, 1)):  # ...and its unused slots hold NaN
        _kc5[_block, _used:] = _vc5[_block, _used:] = float("nan")
    _q5 = torch.randn(3, _heads, 32, generator=_gen).to(_dtype)
    _out5 = paged_attention_triton(*(t.to(DEVICE) for t in (_q5, _kc5, _vc5, _tables5, _lens5)))
    assert _out5.shape == _q5.shape and _out5.dtype == _dtype, \
        f"expected {tuple(_q5.shape)} {_dtype}, got {tuple(_out5.shape)} {_out5.dtype}"
    assert not _out5.isnan().any(), \
        "NaN in the output: mask the unused slots of the last block on the loaded keys and values"
    assert torch.allclose(_out5.cpu().float(), gathered_attention(_q5, _kc5, _vc5, _tables5, _lens5), atol=_atol), \
        f"{_dtype}: the kernel differs from attention over the gathered tokens: check the block-table walk, the online softmax and the partition merge"
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch05_kv_cache/paged_attention_triton")
### END HIDDEN TESTS

# %% [markdown]
# ### What the gather costs · 收集操作的代价
#
# Same data, two layouts: dense attention over contiguous keys, and paged attention over
# a shuffled block layout. The PyTorch version pays for its gather: it copies the whole
# context into a dense tensor at every decode step. A kernel's figure of merit is
# bandwidth: the bytes of K and V it reads per second, as a fraction of the copy
# bandwidth `llmopt.device.calibrate()` measures on the same device. On a GPU the last
# cell of this section prints it for dense sdpa, the PyTorch gather and your Triton kernel
# at 8k context; on the CPU the kernel runs in Triton's interpreter, where its time means
# nothing, so the first cell compares dense and gathered attention only.

# %%
def shuffled_layout(batch, context, block_size=16, n_heads=8, n_kv_heads=2, head_dim=32,
                    dtype=torch.float32, device="cpu"):
    """The same keys and values twice: dense (B, H_kv, T, D) and paged over shuffled blocks.
    Returns (query, key_cache, value_cache, tables, lens), (dense keys, dense values)."""
    blocks_per_seq = context // block_size
    keys = torch.randn(batch, context, n_kv_heads, head_dim, device=device, dtype=dtype)
    values = torch.randn(batch, context, n_kv_heads, head_dim, device=device, dtype=dtype)
    query = torch.randn(batch, n_heads, head_dim, device=device, dtype=dtype)
    order = torch.randperm(batch * blocks_per_seq, device=device)  # dense block i lives at order[i]
    key_cache = torch.empty(batch * blocks_per_seq, block_size, n_kv_heads, head_dim, device=device, dtype=dtype)
    value_cache = torch.empty_like(key_cache)
    key_cache[order] = keys.reshape(-1, block_size, n_kv_heads, head_dim)
    value_cache[order] = values.reshape(-1, block_size, n_kv_heads, head_dim)
    tables = order.view(batch, blocks_per_seq)
    lens = torch.full((batch,), context, device=device)
    dense_kv = keys.transpose(1, 2).contiguous(), values.transpose(1, 2).contiguous()  # (B, H_kv, T, D)
    return (query, key_cache, value_cache, tables, lens), dense_kv


def paged_vs_dense(batch=8, context=512):
    paged_args, (k, v) = shuffled_layout(batch, context)
    query = paged_args[0]
    dense = lambda: F.scaled_dot_product_attention(query[:, :, None], k, v, enable_gqa=True)  # noqa: E731
    paged = lambda: paged_attention(*paged_args)  # noqa: E731
    assert torch.allclose(paged(), dense()[:, :, 0], atol=1e-4)
    return median_seconds(dense, 9), median_seconds(paged, 9)


dense_s, paged_s = paged_vs_dense()
print(f"dense {1e6 * dense_s:.0f} us, paged (PyTorch gather) {1e6 * paged_s:.0f} us: "
      f"paged is {paged_s / dense_s:.1f}x the dense time on the same data")

# %% [markdown]
# How much parallelism each kernel design offers, at 8k context with 32 query and 8 KV
# heads, counted in programs per SM of an H100 (132 SMs [@nvidia-h100-datasheet]), and
# how often each design reads every K/V byte. With fewer programs than SMs part of the
# chip idles; with a few per SM, one program's loads are in flight while another computes.
# On a GPU, the measurement follows.

# %%
def kernel_grids(context=8192, n_heads=32, n_kv_heads=8, partition=512, sms=132):
    print(f"programs per SM ({sms} SMs), {context} tokens of context, {n_heads} query / {n_kv_heads} KV heads")
    print(f"{'batch':>5} {'one per query head':>19} {'one per KV head':>16} {f'per KV head and {partition} tokens':>26}")
    for batch in (1, 8, 64):
        designs = (batch * n_heads, batch * n_kv_heads, batch * n_kv_heads * -(-context // partition))
        print(f"{batch:>5} " + " ".join(f"{n / sms:>{w}.1f}" for n, w in zip(designs, (19, 16, 26))))
    print(f"the first design reads each K/V byte {n_heads // n_kv_heads} times (once per query head "
          f"of its group), the other two once")


kernel_grids()


def kv_bandwidth(batch, context=8192, block_size=16, n_heads=32, n_kv_heads=8, head_dim=128):
    """On a GPU: K/V bytes read per second by dense sdpa, the PyTorch gather and the Triton
    kernel on the same fp16 data, and their fraction of the calibrated copy bandwidth."""
    from llmopt.device import calibrate

    paged_args, (k, v) = shuffled_layout(batch, context, block_size, n_heads, n_kv_heads, head_dim,
                                         torch.float16, "cuda")
    query = paged_args[0]
    copy = calibrate("cuda").copy_bytes_per_s
    kv_bytes = 2 * batch * context * n_kv_heads * head_dim * 2  # K and V, fp16
    contenders = {
        "dense sdpa": lambda: F.scaled_dot_product_attention(query[:, :, None], k, v, enable_gqa=True),
        "PyTorch gather": lambda: paged_attention(*paged_args),
        "Triton kernel": lambda: paged_attention_triton(*paged_args),
    }
    for name, run in contenders.items():
        seconds = triton.testing.do_bench(run, return_mode="median") / 1e3  # device synchronised
        print(f"batch {batch:>2} {name:<15} {kv_bytes / seconds / 1e9:7.0f} GB/s = "
              f"{kv_bytes / seconds / copy:4.0%} of the {copy / 1e9:.0f} GB/s copy bandwidth")


if torch.cuda.is_available():
    for _batch in (8, 64):
        kv_bandwidth(_batch)
else:
    print("no GPU here: the Triton kernel runs in the interpreter; its bandwidth is measured on a GPU")

# %% [markdown]
# ## 6. Decoding through block tables
# ### 6. 通过块表解码
#
# Everything so far ran on random tensors. The paged cache earns its keep only when the
# model decodes through it, so this section plugs it into the engine. The engine asks a
# cache that has a method `attend(layer, query, keys, values, positions)` to do the whole
# attention step itself (`llmopt.engine.PagedAttentionCache`): it hands over the new
# tokens' query, keys and values, already rotated by RoPE, and takes back the output.
# A paged cache does three things there:
#
# 1. **Reserve** (once per step, at layer 0): each row of the batch is one sequence of
#    the `PagedKVCache`; `append_slots` gives the slot mapping of its new tokens. Padding
#    (position `NO_TOKEN`) gets no slot.
# 2. **Write** (every layer): one scatter of the new keys and values through the slot
#    mapping, `PagedKVCache.write`.
# 3. **Read** (every layer): for a decode step, one query token per row, your
#    `paged_attention` over the block tables and context lengths, so the past is read
#    where it lies. A prefill step has many query tokens per row and a causal mask
#    between them, which `paged_attention` does not handle; here it may gather each
#    sequence into a dense tensor once and call your `attention`. Production engines
#    use a paged prefill kernel instead; the prefill is one step of many, the copy is
#    paid once.
#
# Then decoding is `Engine.generate` with this cache: the engine's loop already feeds
# only the new tokens when a cache is given.
#
# **Exercise 6 · 练习6.** Write `PagedEngineCache` and `generate_paged`.

# %% nbgrader={"grade": false, "grade_id": "paged_engine_solution", "locked": false, "schema_version": 3, "solution": true}
class PagedEngineCache:
    """The engine's cache seam over a PagedKVCache: batch row b is sequence seq_ids[b].

    PagedEngineCache(paged_cache, seq_ids); the sequences must already exist in
    paged_cache. engine.forward calls attend() once per layer and step:
    query (B, H, T, D); keys, values (B, H_kv, T, D); positions (B, T) long, NO_TOKEN =
    padding. Each row's real tokens continue its sequence: their positions are
    seq_len, seq_len + 1, ... (else ValueError). attend() reserves their slots at layer 0
    (append_slots), writes every layer's keys and values through the slot mapping, and
    returns (B, H, T, D): for T == 1 from paged_attention over the block tables; for
    T > 1 (prefill) it may gather each sequence and use `attention`. What a padding
    query returns does not matter (finite).
    """

    def __init__(self, paged_cache, seq_ids):
        ### BEGIN SOLUTION
        self.paged = paged_cache
        self.seq_ids = list(seq_ids)
        self.slot_mapping = []  # this step's slots, real tokens in row-major order
        ### END SOLUTION

    def attend(self, layer, query, keys, values, positions):
        ### BEGIN SOLUTION
        real = positions >= 0  # (B, T)
        if layer == 0:  # a new step: reserve the slots of every row's real tokens
            self.slot_mapping = []
            for row, seq in enumerate(self.seq_ids):
                start, count = self.paged.seq_len(seq), int(real[row].sum())
                if positions[row][real[row]].tolist() != list(range(start, start + count)):
                    raise ValueError(f"row {row}: positions {positions[row].tolist()} do not continue "
                                     f"sequence {seq!r} of length {start}")
                self.slot_mapping += self.paged.append_slots(seq, count)
        self.paged.write(layer, self.slot_mapping, keys.transpose(1, 2)[real],
                         values.transpose(1, 2)[real])  # (N, H_kv, D) each
        lengths = [self.paged.seq_len(seq) for seq in self.seq_ids]
        if query.shape[2] == 1:  # decode: read the past where it lies
            tables = [self.paged.block_table(seq) for seq in self.seq_ids]
            width = max(len(table) for table in tables)
            block_tables = torch.tensor([table + [-1] * (width - len(table)) for table in tables])
            out = paged_attention(query[:, :, 0], self.paged.key_cache[layer],
                                  self.paged.value_cache[layer], block_tables,
                                  torch.tensor(lengths))  # (B, H, D)
            return out[:, :, None]  # (B, H, 1, D)
        # prefill: gather each sequence once into a dense, right-padded copy
        batch, n_kv_heads, _, head_dim = keys.shape
        longest = max(lengths)
        dense_keys = keys.new_zeros(batch, n_kv_heads, longest, head_dim)
        dense_values = keys.new_zeros(batch, n_kv_heads, longest, head_dim)
        key_positions = torch.full((batch, longest), NO_TOKEN, dtype=torch.long)
        for row, seq in enumerate(self.seq_ids):
            row_keys, row_values = self.paged.gather(layer, seq)  # (L, H_kv, D)
            dense_keys[row, :, :lengths[row]] = row_keys.transpose(0, 1)
            dense_values[row, :, :lengths[row]] = row_values.transpose(0, 1)
            key_positions[row, :lengths[row]] = torch.arange(lengths[row])
        return attention(query, dense_keys, dense_values, positions, key_positions)
        ### END SOLUTION


def generate_paged(engine, input_ids, attention_mask, max_new_tokens, paged_cache):
    """Greedy decoding with the KV in paged_cache: generate_with_cache's contract.

    Row b of input_ids is sequence b (an int) of paged_cache: added here (it must not
    exist yet) and left there on return, so the caller can look at its block table and
    must free it. Returns (B, T + n) long, as engine.generate does.
    """
    ### BEGIN SOLUTION
    seq_ids = list(range(len(input_ids)))
    for seq in seq_ids:
        paged_cache.add_sequence(seq)
    return engine.generate(input_ids, attention_mask, max_new_tokens,
                           kv_cache=PagedEngineCache(paged_cache, seq_ids))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "paged_engine", "locked": true, "points": 8, "schema_version": 3, "solution": false}
# A pool whose free blocks are scattered: sequences "x0".."x7" take one block each, and
# the even ones are freed, so every new block comes from between two live ones.
_pool = PagedKVCache(num_blocks=48, block_size=4, n_layers=len(W.layers), n_kv_heads=W.n_kv_heads,
                     head_dim=W.head_dim)
for _i in range(8):
    _pool.add_sequence(f"x{_i}")
    _pool.append_slots(f"x{_i}", 4)
for _i in range(0, 8, 2):
    _pool.free(f"x{_i}")
_batch = tokenizer(["def main(argv):\n    ", "import os\n"], return_tensors="pt", padding=True)
_want = model.generate(**_batch, do_sample=False, max_new_tokens=12)
_got = generate_paged(engine, _batch.input_ids, _batch.attention_mask, 12, _pool)
assert _got.tolist() == _want.tolist(), \
    "tokens differ from transformers generate(do_sample=False): check the slot mapping and the read path"
for _row in range(2):
    _real = int(_batch.attention_mask[_row].sum()) + 12 - 1  # the last token is never fed back
    assert _pool.seq_len(_row) == _real, \
        f"sequence {_row} should hold {_real} tokens (real prompt + fed tokens), holds {_pool.seq_len(_row)}"
    print(f"row {_row}: {_pool.seq_len(_row)} tokens in blocks {_pool.block_table(_row)}")
    _pool.free(_row)
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch05_kv_cache/paged_engine")
### END HIDDEN TESTS

# %% [markdown]
# The block tables printed above skip the blocks of the live sequences `x1`, `x3`, ...:
# the tokens are the same as `transformers`', and the keys and values live wherever
# the allocator found room. One more run, with a longer answer and a measurement: the
# time per token of the three ways to decode that this chapter has built.

# %%
def tokens_per_second(decode, batch, new_tokens):
    with torch.no_grad():  # inference only
        decode(batch, 2)  # warm-up: first-call costs are not decoding
        start = time.perf_counter()
        out = decode(batch, new_tokens)
    return (out.shape[1] - batch.input_ids.shape[1]) * out.shape[0] / (time.perf_counter() - start), out


plain_engine = Engine(W)  # no EOS: every row decodes all its tokens, as eos_token_id=None does


def decode_paged(batch, new_tokens):
    pool = PagedKVCache(num_blocks=256, block_size=16, n_layers=len(W.layers), n_kv_heads=W.n_kv_heads,
                        head_dim=W.head_dim)
    out = generate_paged(plain_engine, batch.input_ids, batch.attention_mask, new_tokens, pool)
    for row in range(len(out)):
        pool.free(row)
    return out


DECODE_TOKENS = 24 if SMALL else 96
decode_batch = tokenizer(["def main(argv):\n    ", "import os\n", "class Stack:\n    def push(self, item):\n"],
                         return_tensors="pt", padding=True)
decoders = {
    "transformers generate": lambda b, n: model.generate(**b, do_sample=False, max_new_tokens=n,
                                                         eos_token_id=None),
    "engine, contiguous cache": lambda b, n: generate_with_cache(plain_engine, b.input_ids,
                                                                 b.attention_mask, n),
    "engine, paged cache": decode_paged,
}
outputs = {}
for name, decode in decoders.items():
    rate, outputs[name] = tokens_per_second(decode, decode_batch, DECODE_TOKENS)
    print(f"{name:26s} {rate:7.0f} tokens/s")
print("paged tokens == transformers tokens:",
      outputs["engine, paged cache"].tolist() == outputs["transformers generate"].tolist())

# %% [markdown]
# The paged path does the same arithmetic as the contiguous one plus bookkeeping: a block
# table and a slot mapping per step, built in Python, and a gather of the blocks inside
# `paged_attention`. On a small model on a CPU that bookkeeping is visible next to the
# matrix products; what paging buys is not speed per step but memory, which section 8
# turns into requests per GPU.

# %% [markdown]
# ## 7. Prefix caching
# ### 7. 前缀缓存
#
# Chat requests repeat themselves: every turn of a conversation resends the system prompt
# and the history. If the KV of a full block depends only on the tokens up to and
# including it, a block computed once can serve every request whose prefix is identical.
# The block's identity must therefore cover **the whole prefix**: a hash chained over the
# blocks, $h_i = \mathrm{hash}(h_{i-1}, \text{tokens of block } i)$. Hashing a block's own
# tokens alone would share the KV of "`return x`" computed after one prefix with a request
# where it follows another, and RoPE and attention make those KV different.
#
# Freed blocks keep their KV and their hash: they are *cached*, reusable by a later hit
# until memory runs short, when the least recently used unreferenced cached block is
# evicted. Only full blocks are shared; the block holding the prompt's last token is
# always computed afresh (its logits start the answer).
#
# The order in which a finished request frees its blocks is the order in which they
# become evictable. Free them root first and the system prompt that every chat shares
# is the first block evicted, although each later request needs it before any of its
# descendants; free them **tail first** (as vLLM's V1 block manager does [@vllm-v1-kv-cache-manager])
# and a request's private tail goes before the shared root.
#
# **Exercise 7 · 练习7.** Write `chained_block_hashes` and `PrefixCache`.

# %% nbgrader={"grade": false, "grade_id": "prefix_cache_solution", "locked": false, "schema_version": 3, "solution": true}
def chained_block_hashes(token_ids, block_size):
    """One hash per *full* block of token_ids (a list of ints): h_i = H(h_{i-1}, block i).

    Equal prefixes give equal hashes; blocks with equal tokens after different prefixes
    give different hashes. Deterministic across processes (no salted hash()). Returns a
    list of ints of length len(token_ids) // block_size.
    """
    ### BEGIN SOLUTION
    hashes, previous = [], b""
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        block = token_ids[start:start + block_size]
        digest = hashlib.sha256(previous + b"|" + ",".join(map(str, block)).encode()).digest()
        hashes.append(int.from_bytes(digest[:8], "little"))
        previous = digest
    return hashes
    ### END SOLUTION


class PrefixCache:
    """Block bookkeeping with prefix sharing and LRU eviction (KV tensors live elsewhere).

    PrefixCache(num_blocks, block_size). A full block of a prompt is identified by its
    chained hash (chained_block_hashes); a block nobody references but whose hash is
    registered stays *cached* (evictable), reusable until it is evicted.
    """

    def __init__(self, num_blocks, block_size):
        """num_blocks free blocks of block_size tokens; nothing cached; stats at zero."""
        ### BEGIN SOLUTION
        self.block_size = block_size
        self.ref_counts = [0] * num_blocks
        self.free_blocks = list(range(num_blocks - 1, -1, -1))
        self.cached = {}  # hash -> block holding that prefix's KV
        self.hash_of = {}  # block -> its registered hash
        self.evictable = OrderedDict()  # unreferenced cached blocks, least recently used first
        self.queried_blocks = self.hit_blocks = 0
        ### END SOLUTION

    def _new_block(self):
        """A block for allocate(): a free one, else the least recently freed cached block,
        evicted (its hash forgotten), else OutOfBlocksError. A helper for allocate; optional."""
        ### BEGIN SOLUTION
        if self.free_blocks:
            return self.free_blocks.pop()
        if self.evictable:
            block, _ = self.evictable.popitem(last=False)  # the least recently used
            del self.cached[self.hash_of.pop(block)]
            return block
        raise OutOfBlocksError(f"all {len(self.ref_counts)} blocks are referenced by running "
                               f"requests; none is free or evictable")
        ### END SOLUTION

    def allocate(self, token_ids):
        """Blocks for a prompt: returns (block_table, num_cached_tokens).

        Walk its full blocks, except a block holding the prompt's last token, in order;
        while each block's chained hash is cached, reuse that block (one more reference;
        a cached block nobody references leaves the eviction list). From the first miss
        on, every block is new. A new full block is registered under its hash (unless
        that hash is already cached); the partial last block is never registered. A new
        block comes from the free blocks, else by evicting the least recently freed
        cached block (its hash is forgotten), else OutOfBlocksError (nothing stays
        allocated). num_cached_tokens = block_size * (number of reused blocks).
        """
        ### BEGIN SOLUTION
        hashes = chained_block_hashes(token_ids, self.block_size)
        shareable = (len(token_ids) - 1) // self.block_size  # blocks before the last token's
        n_blocks = -(-len(token_ids) // self.block_size)
        table, hits, missed = [], 0, False
        try:
            for index in range(n_blocks):
                h = hashes[index] if index < len(hashes) else None
                if index < shareable and not missed and h in self.cached:
                    block = self.cached[h]
                    self.evictable.pop(block, None)
                    self.ref_counts[block] += 1
                    hits += 1
                else:
                    missed = True
                    block = self._new_block()
                    self.ref_counts[block] = 1
                    if h is not None and h not in self.cached:
                        self.cached[h], self.hash_of[block] = block, h
                table.append(block)
        except OutOfBlocksError:
            self.free(table)
            raise
        self.queried_blocks += shareable
        self.hit_blocks += hits
        return table, hits * self.block_size
        ### END SOLUTION

    def free(self, block_table):
        """One reference less per block, walking the table from its last block to its
        first; a block left unreferenced becomes evictable if registered (most recently
        used last), else free. Tail first: when memory runs short, a request's own last
        blocks are evicted before the prefix it shares with others."""
        ### BEGIN SOLUTION
        for block in reversed(block_table):  # the root of a shared prefix is released last
            if self.ref_counts[block] == 0:
                raise DoubleFreeError(f"block {block} is not referenced")
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                if block in self.hash_of:
                    self.evictable[block] = None  # most recently used: evicted last
                else:
                    self.free_blocks.append(block)
        ### END SOLUTION

    def ref_count(self, block):
        """The block's reference count."""
        ### BEGIN SOLUTION
        return self.ref_counts[block]
        ### END SOLUTION

    def num_free_blocks(self):
        """Free + evictable blocks: those a new allocation may take."""
        ### BEGIN SOLUTION
        return len(self.free_blocks) + len(self.evictable)
        ### END SOLUTION

    def stats(self):
        """{"queried_blocks": int, "hit_blocks": int}: cumulative over allocate() calls,
        counting the blocks that were eligible for reuse and those reused."""
        ### BEGIN SOLUTION
        return {"queried_blocks": self.queried_blocks, "hit_blocks": self.hit_blocks}
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "prefix_cache", "locked": true, "points": 8, "schema_version": 3, "solution": false}
assert chained_block_hashes([1, 2, 3, 4, 5], 2)[:2] == chained_block_hashes([1, 2, 3, 4], 2), \
    "equal prefixes must give equal block hashes"
assert len(chained_block_hashes([1, 2, 3, 4, 5], 2)) == 2, "one hash per full block"
assert chained_block_hashes([9, 9, 3, 4], 2)[1] != chained_block_hashes([1, 2, 3, 4], 2)[1], \
    "the same block after a different prefix must hash differently: chain the hashes"
_pc = PrefixCache(num_blocks=6, block_size=2)
_t1, _c1 = _pc.allocate([1, 2, 3, 4, 5])
assert _c1 == 0 and len(_t1) == 3, "the first request finds nothing cached and needs 3 blocks"
_pc.free(_t1)
_t2, _c2 = _pc.allocate([1, 2, 3, 4, 7, 8, 9])
assert _c2 == 4 and _t2[:2] == _t1[:2], "the second request reuses the 2 full blocks of [1, 2, 3, 4]"
print(_pc.stats())
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch05_kv_cache/prefix_cache")
### END HIDDEN TESTS

# %% [markdown]
# ### Hit rate on a multi-turn chat · 多轮对话的命中率
#
# A trace of chat sessions that share one system prompt; every turn resends the whole
# history plus a new user message. Each request allocates its prompt's blocks, then frees
# them when it ends (the blocks stay cached). We count the prefill tokens the cache saved,
# and turn them into time to first token (TTFT) with the prefill time measured on the
# course model. Then we check the claim that matters most: a request served from cached
# blocks produces the same tokens as one computed from scratch.

# %%
def chat_trace(n_sessions, turns, seed=0):
    """Prompts (token id lists) of a multi-turn chat trace with a shared system prompt."""
    rng = random.Random(seed)
    system = tokenizer("# You are a careful Python assistant. Answer with code only.\n"
                       "import os\nimport sys\n\n")["input_ids"]
    prompts = []
    for _ in range(n_sessions):
        history = list(system)
        for _ in range(turns):
            history += [rng.randrange(3, model.config.vocab_size) for _ in range(rng.randint(8, 40))]
            prompts.append(list(history))  # the request: everything so far
            history += [rng.randrange(3, model.config.vocab_size) for _ in range(rng.randint(8, 40))]
    return prompts


trace = chat_trace(n_sessions=4 if SMALL else 8, turns=4)
prefix_cache = PrefixCache(num_blocks=256, block_size=16)
prompt_tokens = saved_tokens = 0
for prompt in trace:
    table, cached_tokens = prefix_cache.allocate(prompt)
    prompt_tokens, saved_tokens = prompt_tokens + len(prompt), saved_tokens + cached_tokens
    prefix_cache.free(table)
stats = prefix_cache.stats()
hit_rate = stats["hit_blocks"] / max(1, stats["queried_blocks"])
print(f"{len(trace)} requests: block hit rate {hit_rate:.0%}, prefill tokens saved "
      f"{saved_tokens} of {prompt_tokens} ({saved_tokens / prompt_tokens:.0%})")

PREFILL_PROBE = 128  # tokens; prefill cost per token, measured once (median of 5 runs)
per_token_s = median_seconds(lambda: engine.forward(torch.zeros(1, PREFILL_PROBE, dtype=torch.long),
                                                    torch.arange(PREFILL_PROBE)[None])) / PREFILL_PROBE
print(f"prefill costs about {1e3 * per_token_s:.2f} ms per token here: the cache saved "
      f"about {1e3 * per_token_s * saved_tokens / len(trace):.0f} ms of TTFT per request")

# %% [markdown]
# And the check: the KV of a cached prefix, reused for a new request, gives the same
# tokens as recomputing it. The KV of the cached blocks is copied into a contiguous cache
# (a real engine reads it in place with paged attention), only the uncached suffix is
# prefilled, and the result is compared with `transformers`.

# %%
def generate_reusing_prefix(prompt_ids, prefix_view_per_layer, prefix_len, max_new_tokens=12):
    """Prefill only prompt_ids[prefix_len:], with the prefix's KV preloaded into the cache."""
    cache = ContiguousKVCache(len(W.layers), 1, W.n_kv_heads, W.head_dim, len(prompt_ids) + max_new_tokens)
    for layer, (keys, values) in enumerate(prefix_view_per_layer):
        cache.update(layer, keys[:, :, :prefix_len], values[:, :, :prefix_len], torch.arange(prefix_len)[None])
    ids = torch.tensor([prompt_ids])
    tokens, step_ids, step_pos = ids, ids[:, prefix_len:], torch.arange(prefix_len, len(prompt_ids))[None]
    with torch.no_grad():  # inference only
        for _step in range(max_new_tokens):
            next_token = engine.forward(step_ids, step_pos, cache)[:, -1].argmax(-1, keepdim=True)
            tokens, step_ids, step_pos = torch.cat([tokens, next_token], 1), next_token, step_pos[:, -1:] + 1
    return tokens  # (1, T + max_new_tokens)


first, second = trace[0], trace[1]  # turn 2 of session 1 extends turn 1
reuse = PrefixCache(num_blocks=64, block_size=16)
reuse.free(reuse.allocate(first)[0])
_, hit_tokens = reuse.allocate(second)
recording = ContiguousKVCache(len(W.layers), 1, W.n_kv_heads, W.head_dim, len(first))
with torch.no_grad():  # inference only
    engine.forward(torch.tensor([first]), torch.arange(len(first))[None], recording)
prefix_kv = [(recording.keys[layer], recording.values[layer]) for layer in range(len(W.layers))]
reused = generate_reusing_prefix(second, prefix_kv, hit_tokens)
fresh = model.generate(torch.tensor([second]), do_sample=False, max_new_tokens=12, eos_token_id=None)
print(f"{hit_tokens} of {len(second)} prompt tokens served from the cache; "
      f"tokens identical to transformers: {reused.tolist() == fresh.tolist()}")

# %% [markdown]
# ## 8. How many sequences fit: KV sizing and capacity
# ### 8. 能容纳多少序列：KV大小与容量
#
# A serving GPU holds the weights once and the KV of every running sequence, so the
# number of sequences it can batch is a division: the memory left for KV over the KV
# one sequence needs. The numerator and the denominator both depend on the attention
# layout:
#
# - **MHA** (multi-head attention): a key and a value of `head_dim` elements for every
#   head, in every layer: $2 \times L \times H \times d \times$ bytes per element.
# - **GQA** [@ainslie2023-gqa]: the same formula with the $H_{kv}$ KV heads instead of
#   the $H$ query heads. Llama-3.1-8B has 32 layers, 8 KV heads of 128 dimensions
#   [@meta2024-llama3]: $2 \times 32 \times 8 \times 128 \times 2$ bytes = 128 KiB per
#   token in BF16.
# - **MLA** (multi-head latent attention, DeepSeek-V3 [@deepseek2024-v3]): each layer
#   caches one compressed latent of 512 elements, from which every head's keys and
#   values are re-projected, plus one 64-element RoPE key shared by all heads. No
#   separate values, no per-head copies: $61 \times (512 + 64) \times 2$ bytes.
# - **FP8 KV**: the same shapes at 1 byte per element instead of 2.
#
# The denominator is in blocks, not tokens: a sequence of $n$ tokens holds
# $\lceil n / \text{block\_size} \rceil$ blocks. The numerator is the simulator's block
# pool, `CostModel.kv_blocks`: like vLLM, the engine may use a fraction of device
# memory (0.9 by default [@vllm-v1-kv-cache-manager]); the weights come first, and the
# rest is cut into blocks. `LLAMA3_8B.weight_bytes` counts the 15.0 GB of weights a step
# reads; the input embedding table (128,256 × 4,096 × 2 bytes, not tied to the LM head
# in Llama-3.1-8B [@meta2024-llama3]) stays resident too, so it is passed as
# `other_bytes`. The device capacities are the datasheets': 80 GB for the H100 SXM
# [@nvidia-h100-datasheet] and 141 GB for the H200 [@nvidia-h200-datasheet].
#
# **Exercise 8 · 练习8.** Write `kv_bytes_per_token`, `mla_kv_bytes_per_token` and
# `max_concurrent_sequences`.

# %% nbgrader={"grade": false, "grade_id": "kv_sizing_solution", "locked": false, "schema_version": 3, "solution": true}
def kv_bytes_per_token(n_layers, n_kv_heads, head_dim, bytes_per_element=2):
    """Bytes of KV cache per token with MHA (n_kv_heads = n_heads) or GQA: a key and a
    value of head_dim elements per KV head, in every layer. An int."""
    ### BEGIN SOLUTION
    return 2 * n_layers * n_kv_heads * head_dim * bytes_per_element
    ### END SOLUTION


def mla_kv_bytes_per_token(n_layers, latent_dim, rope_dim, bytes_per_element=2):
    """Bytes of KV cache per token with multi-head latent attention: per layer, one
    compressed latent of latent_dim elements and one RoPE key of rope_dim elements,
    both shared by every head. An int."""
    ### BEGIN SOLUTION
    return n_layers * (latent_dim + rope_dim) * bytes_per_element
    ### END SOLUTION


def max_concurrent_sequences(hardware, model, context_len, block_size=16, memory_fraction=0.9,
                             other_bytes=0.0):
    """How many sequences of context_len tokens the KV pool of `model` (a
    llmopt.simulator.ModelProfile) on `hardware` (a HardwareProfile) holds at once.

    The pool is CostModel(hardware, model).kv_blocks(block_size, memory_fraction,
    other_bytes) blocks; a sequence holds ceil(context_len / block_size) of them. An int.
    """
    ### BEGIN SOLUTION
    blocks = CostModel(hardware, model).kv_blocks(block_size, memory_fraction, other_bytes)
    return blocks // -(-context_len // block_size)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "kv_sizing", "locked": true, "points": 6, "schema_version": 3, "solution": false}
assert kv_bytes_per_token(32, 8, 128) == 131072, "Llama-3.1-8B in BF16 stores 128 KiB of KV per token"
assert kv_bytes_per_token(32, 8, 128, bytes_per_element=1) == 65536, "FP8 KV halves it"
assert mla_kv_bytes_per_token(61, 512, 64) == 70272, "DeepSeek-V3's MLA: 61 x (512 + 64) x 2 bytes"
_tiny = ModelProfile("tiny", weight_bytes=1e9, flops_per_token=1e9, kv_bytes_per_token=1000, n_layers=1,
                     attention_width=64)
_tiny_gpu = HardwareProfile("tiny GPU", 1e12, 1e12, memory_bytes=2e9)
# 0.9 x 2e9 - 1e9 = 8e8 bytes: 50,000 blocks of 16 tokens; a 100-token sequence holds 7 blocks
assert max_concurrent_sequences(_tiny_gpu, _tiny, 100) == 7142, \
    "count blocks, not tokens: a 100-token sequence holds ceil(100 / 16) = 7 blocks"
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch05_kv_cache/kv_sizing")
### END HIDDEN TESTS

# %% [markdown]
# The numbers for one model, Llama-3.1-8B with BF16 weights, at 8k context:

# %%
EMBEDDING_BYTES = 128256 * 4096 * 2  # Llama-3.1-8B's input embedding table, BF16, resident
CONTEXT = 8192
layouts = {
    "MHA, 32 heads (Llama-2-7B shape)": kv_bytes_per_token(32, 32, 128),
    "GQA, 8 KV heads (Llama-3.1-8B)": kv_bytes_per_token(32, 8, 128),
    "GQA, FP8 KV": kv_bytes_per_token(32, 8, 128, bytes_per_element=1),
    "MLA (DeepSeek-V3, 61 layers)": mla_kv_bytes_per_token(61, 512, 64),
}
for name, per_token in layouts.items():
    print(f"{name:34s} {per_token / 1024:6.1f} KiB per token, {per_token * CONTEXT / 1e9:5.2f} GB per "
          f"{CONTEXT}-token sequence")
print()
capacity = {}
for kv_name, per_token in (("BF16 KV", kv_bytes_per_token(32, 8, 128)),
                           ("FP8 KV", kv_bytes_per_token(32, 8, 128, bytes_per_element=1))):
    profile = dataclasses.replace(LLAMA3_8B, kv_bytes_per_token=per_token)
    for gpu in (H100_SXM, H200):
        capacity[kv_name, gpu.name] = max_concurrent_sequences(gpu, profile, CONTEXT, other_bytes=EMBEDDING_BYTES)
        blocks = CostModel(gpu, profile).kv_blocks(16, 0.9, EMBEDDING_BYTES)
        print(f"Llama-3.1-8B, {kv_name}, {gpu.name:8s} ({gpu.memory_bytes / 1e9:.0f} GB): {blocks:6d} blocks "
              f"of 16 -> {capacity[kv_name, gpu.name]:3d} sequences of {CONTEXT} tokens")

# %% [markdown]
# The H200's extra 61 GB all go to KV (the weights are the same 16 GB), so it holds about
# twice the H100's sequences; FP8 KV doubles both. These are upper bounds: a real engine
# also holds its peak activations, which vLLM measures at start-up before it sizes the
# pool [@vllm-v1-kv-cache-manager].

# %% [markdown]
# ## 9. Questions
# ### 9. 思考题
#
# Answer each question by returning a number from its function in the cell below (the
# grader computes the answers itself; a relative error of 1 % is accepted unless the
# question says otherwise). Use the functions of this chapter or a pencil. The grader
# runs the answer cell with the setup and exercise cells only, not the demonstrations:
# compute from those, or return the number.
#
# **Q1 · 分页带来的容量.** Llama-3.1-8B, BF16 weights and KV, on one H100 SXM: the pool of
# section 8 (memory fraction 0.9, the embedding table as `other_bytes`, blocks of 16
# tokens). A contiguous cache must reserve the maximum context, 8,192 tokens, for every
# request. The requests of a chat service hold 1,000 tokens each at their longest. How
# many times more requests can run at once with paging than with the contiguous cache?
# (Count whole requests on both sides; 3 % tolerance.)
#
# **Q2 · MLA 节省多少.** How many times fewer KV bytes per token does DeepSeek-V3's MLA
# store than a GQA layout with Llama-3.1-8B's KV shape (8 KV heads of 128 dimensions)
# over the same 61 layers, both in BF16?
#
# **Q3 · 前缀命中节省的预填充.** Every request of a trace has a 2,000-token prompt whose
# first 1,500 tokens are already in the prefix cache of section 7 (blocks of 16 tokens).
# What fraction of each prompt's prefill tokens does the cache save? (Absolute error
# 0.002.)

# %% nbgrader={"grade": false, "grade_id": "questions_solution", "locked": false, "schema_version": 3, "solution": true}
def q1_paging_capacity_gain():
    """Q1: how many times more requests run at once with paging than with the 8,192-token
    reservation (a number)."""
    ### BEGIN SOLUTION
    blocks = CostModel(H100_SXM, LLAMA3_8B).kv_blocks(16, 0.9, other_bytes=128256 * 4096 * 2)
    return (blocks // math.ceil(1000 / 16)) / (blocks // (8192 // 16))
    ### END SOLUTION


def q2_mla_saving():
    """Q2: GQA (8 KV heads of 128) KV bytes per token over MLA's, 61 layers, BF16 (a number)."""
    ### BEGIN SOLUTION
    return kv_bytes_per_token(61, 8, 128) / mla_kv_bytes_per_token(61, 512, 64)
    ### END SOLUTION


def q3_prefill_saved_fraction():
    """Q3: the fraction of the 2,000-token prompt's prefill that the cache saves (a number)."""
    ### BEGIN SOLUTION
    return (1500 // 16) * 16 / 2000  # only full blocks are shared
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "questions", "locked": true, "points": 6, "schema_version": 3, "solution": false}
_answers = {"Q1": q1_paging_capacity_gain(), "Q2": q2_mla_saving(), "Q3": q3_prefill_saved_fraction()}
for _q, _a in _answers.items():
    assert isinstance(_a, (int, float)) and not isinstance(_a, bool), f"{_q}: return a number, got {_a!r}"
assert 0 < _answers["Q3"] < 1, "Q3: a fraction of the prefill lies between 0 and 1"
print(", ".join(f"{_q} {_a:.3g}" for _q, _a in _answers.items()))
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch05_kv_cache/questions")
### END HIDDEN TESTS

# %% [markdown]
# ## Chapter summary · 本章小结
#
# ### Summary · 小结
#
# - A decoder's past is its keys and values. Recomputing them costs a forward pass over
#   the whole prefix per token; a **contiguous cache** turns a step into one token's pass,
#   and the speed-up measured in section 2 grows with the sequence length.
# - A contiguous cache must reserve the longest possible sequence up front. **Paging**
#   stores KV in fixed blocks named by a block table, so a sequence wastes at most one
#   block's tail; reference counts let sequences share blocks, and copy-on-write keeps
#   them apart when one of them writes.
# - **Paged attention** reads the past through the block table; the slots of a block past
#   the context length must be ignored even when they hold NaN.
# - Through the engine's `attend` seam, the course model decodes from a scattered block
#   pool token for token as `transformers` does (section 6).
# - A **prefix cache** names a full block by a hash chained over its whole prefix, reuses
#   it across requests, evicts the least recently used unreferenced block, and frees a
#   request's blocks tail first so that shared roots live longest.
# - **Capacity** is a division in blocks: memory left after the weights over the blocks
#   one sequence holds. GQA, MLA and FP8 KV shrink the denominator (section 8).
#
# ### Common pitfalls · 常见误区
#
# Each pitfall below runs the buggy variant next to yours and shows it failing.
#
# **1. RoPE position offset during decode.** The new token's key and query must be rotated
# for its real position, not for its index in this step's input (which is always 0).

# %%
def generate_with_step_positions(prompt, n=12):
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    cache = ContiguousKVCache(len(W.layers), 1, W.n_kv_heads, W.head_dim, ids.shape[1] + n)
    with torch.no_grad():  # inference only
        logits = engine.forward(ids, torch.arange(ids.shape[1])[None], cache)
        out = [int(logits[0, -1].argmax())]
        for step in range(n - 1):  # BUG: position 0 for every new token, and written to slot 0
            logits = engine.forward(torch.tensor([[out[-1]]]), torch.zeros(1, 1, dtype=torch.long), cache)
            out.append(int(logits[0, -1].argmax()))
    return tokenizer.decode(out)


prompt = "def read_lines(path):\n    with open(path) as f:\n"
right = generate_with_cache(engine, tokenizer(prompt, return_tensors="pt").input_ids, max_new_tokens=12)
print("right positions:", repr(tokenizer.decode(right[0, -12:])))
print("position 0     :", repr(generate_with_step_positions(prompt)))

# %% [markdown]
# **2. `repeat` instead of `repeat_interleave` for GQA heads.** `repeat` tiles the KV heads
# (0, 1, 0, 1, ...), so query head 1 reads KV head 1 instead of 0. The shapes are right
# and nothing crashes; only the numbers are wrong.

# %%
q, k, v = torch.randn(1, 8, 4, 16), torch.randn(1, 2, 4, 16), torch.randn(1, 2, 4, 16)
pos = torch.arange(4)[None]
oracle = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
tiled = F.scaled_dot_product_attention(q, k.repeat(1, 4, 1, 1), v.repeat(1, 4, 1, 1), is_causal=True)
print(f"repeat_interleave: max error {(attention(q, k, v, pos, pos) - oracle).abs().max():.1e}; "
      f"repeat: max error {(tiled - oracle).abs().max():.2f}")

# %% [markdown]
# **3. A causal mask by index when the query is shorter than the keys.** `is_causal=True`
# (and `torch.tril`) align the mask to the top-left corner: a single decode query then
# sees only the first key instead of all of them.

# %%
one_query = q[:, :, -1:]
top_left = F.scaled_dot_product_attention(one_query, k.repeat_interleave(4, 1), v.repeat_interleave(4, 1),
                                          is_causal=True)
print(f"decode step, index mask: max error {(top_left - oracle[:, :, -1:]).abs().max():.2f}; "
      f"position mask: {(attention(one_query, k, v, pos[:, -1:], pos) - oracle[:, :, -1:]).abs().max():.1e}")

# %% [markdown]
# **4. Freeing a block that is still shared.** A forked sequence that returns its blocks
# straight to the free list, ignoring reference counts, hands the parent's live block to
# the next request, which overwrites it. With reference counts, the parent's data survives.

# %%
naive_free_list = []
shared = PagedKVCache(num_blocks=4, block_size=4, n_layers=1, n_kv_heads=1, head_dim=1)
shared.add_sequence("parent")
shared.write(0, shared.append_slots("parent", 4), torch.ones(4, 1, 1), torch.ones(4, 1, 1))
shared.fork("parent", "child")
naive_free_list += shared.block_table("child")  # BUG: ignores that "parent" still uses it
print(f"naive: block {naive_free_list[0]} goes back to the pool while the parent's table "
      f"{shared.block_table('parent')} still points at it")
shared.free("child")
shared.add_sequence("next")
shared.write(0, shared.append_slots("next", 4), torch.zeros(4, 1, 1), torch.zeros(4, 1, 1))
print("with reference counts, the parent still reads", shared.gather(0, "parent")[0].flatten().tolist())

# %% [markdown]
# **5. Masking the scores of unused slots but not their values.** A weight of exactly 0
# still multiplies the value in the slot, and $0 \times \text{NaN} = \text{NaN}$: one
# uninitialised slot past the context length poisons the whole output.

# %%
poisoned_values = torch.randn(2, 4, 1, 8)  # 2 blocks of 4 slots, 1 KV head, head_dim 8
poisoned_values[1, 2:] = float("nan")  # slots 6 and 7: past the context length of 6
keys_demo, query_demo = torch.randn(2, 4, 1, 8), torch.randn(1, 1, 8)
table_demo, length_demo = torch.tensor([[0, 1]]), torch.tensor([6])
scores_demo = (query_demo[0, 0] @ keys_demo.flatten(0, 1)[:, 0].T).masked_fill(torch.arange(8) >= 6, float("-inf"))
print("scores masked only:", (torch.softmax(scores_demo, -1) @ poisoned_values.flatten(0, 1)[:, 0]).isnan().any().item(),
      "-> NaN; values zeroed too:",
      paged_attention(query_demo, keys_demo, poisoned_values, table_demo, length_demo).isnan().any().item())

# %% [markdown]
# ### Practical checklist · 实战检查清单
#
# - [ ] Positions, not indices: RoPE and the causal mask of a decode step use each token's
#   real position (and left padding shifts it per row).
# - [ ] GQA: query head $h$ reads KV head $h \,/\!/\, (H/H_{kv})$: `repeat_interleave`.
# - [ ] Check the cache against generation without it, token for token, on padded batches.
# - [ ] Size KV memory from bytes per token: $2 \times$ layers $\times$ KV heads $\times$
#   head_dim $\times$ bytes per element (MLA: layers $\times$ (latent + RoPE key) $\times$
#   bytes), and count a sequence in whole blocks.
# - [ ] Paged: blocks are reference-counted; copy a shared partial block before writing.
# - [ ] Paged attention: zero (or never load) the slots past the context length.
# - [ ] After every request is freed, every block is free again (no leak).
# - [ ] Prefix cache: chain the hashes over the whole prefix; never share the block that
#   holds the prompt's last token; free a request's blocks tail first; evict unreferenced
#   blocks least recently used first.
# - [ ] Report cache hit rate and prefill tokens saved on *your* traffic before you count
#   on them.
#
# ### ROI formula · ROI计算公式
#
# What paging buys is requests per GPU, and what a prefix cache buys is prefill. Both
# enter the chapter-1 formula for the cost of a million tokens,
#
# $$c = \frac{\text{GPUs} \times \text{USD per GPU-hour}}{\text{tokens/s} \times 3600 \times \text{utilisation}} \times 10^6,$$
#
# through the tokens per second. Take Llama-3.1-8B in BF16 on one H100 SXM with the pool
# of section 8. A contiguous cache that reserves 8,192 tokens per request runs as many
# requests as section 8 computed; paging runs as many as the requests' real lengths
# allow, here 1,000 tokens each (Q1). The decode throughput of each batch comes from the
# simulator's roofline, a bound and not a prediction (chapter 6 puts measurements beside
# it): each step reads the weights once and every sequence's KV. The GPU price is an
# **assumption for illustration**.

# %%
def cost_per_million_tokens(tokens_per_second, gpu_hourly_usd, utilization=1.0, num_gpus=1):
    return num_gpus * gpu_hourly_usd / (tokens_per_second * 3600 * utilization) * 1e6


ASSUMED_GPU_HOURLY_USD = 2.50  # an assumption: your provider's price per H100-hour
MEAN_LEN, RESERVED_LEN = 1000, 8192
h100 = CostModel(H100_SXM, LLAMA3_8B)
pool_blocks = h100.kv_blocks(16, 0.9, EMBEDDING_BYTES)
rates = {}
for name, batch in (("contiguous, 8,192 reserved", pool_blocks // (RESERVED_LEN // 16)),
                    ("paged, blocks of 16", pool_blocks // math.ceil(MEAN_LEN / 16))):
    rates[name] = batch / h100.step_time([(1, MEAN_LEN)] * batch)  # tokens/s, roofline
    print(f"{name:27s} {batch:4d} sequences, {rates[name]:7,.0f} tokens/s, "
          f"{cost_per_million_tokens(rates[name], ASSUMED_GPU_HOURLY_USD):.3f} USD per 1M tokens")
print(f"paging: {rates['paged, blocks of 16'] / rates['contiguous, 8,192 reserved']:.1f}x the tokens per "
      f"second for the same GPU-hour")

PROMPT_LEN, CACHED = 2000, (1500 // 16) * 16  # Q3's request
prefill_s = h100.step_time([(PROMPT_LEN, 0)])
prefill_hit_s = h100.step_time([(PROMPT_LEN - CACHED, CACHED)])
print(f"prefill of a {PROMPT_LEN}-token prompt: {1e3 * prefill_s:.1f} ms from scratch, "
      f"{1e3 * prefill_hit_s:.1f} ms with {CACHED} tokens cached (roofline); the chat trace of "
      f"section 7 saved {saved_tokens / prompt_tokens:.0%} of its prefill tokens")

# %% [markdown]
# Eight times the sequences do not make eight times the tokens: every sequence in the
# batch adds its KV to the bytes each step reads, so the step grows with the batch.
# Paging's gain is the capacity to batch; how much of it becomes throughput depends on
# how much of each step is weights and how much is KV, which is what the next chapter's
# scheduler and simulator work with.

# %% [markdown]
# ## Serving benchmark · 服务基准测试
#
# The chapter's parts, measured as a server would use them. `llmopt.serve_bench` replays a
# multi-turn chat trace (two shared system prompts, each turn's prompt the conversation so
# far) three ways: `transformers`' `generate` one request at a time, `generate` on static
# batches of 8, and the course engine one request at a time with **your**
# `generate_with_cache`. It prints output tokens per second, TTFT and TPOT percentiles and
# the share of requests within both SLOs, checks that every server produced the same
# tokens, and splits batch 1's time into prefill and decode. Chapter 6 adds the fourth
# server, continuous batching on a paged cache.
#
# Read the split before the ratio. A decode step at batch 1 reads every weight once for one
# token, so it is bound by per-call overhead and memory bandwidth, and that is where a
# lean engine with a cache wins. A prefill is large matrix products, the same work for
# every engine, so it sets a floor under the whole-request ratio. The instructors'
# `make bench` runs the same benchmark on the reference components with 2 threads; the
# course's README records what it measured.

# %%
from llmopt.serve_bench import chat_workload, run_serving_benchmark

if SMALL:  # under test: one short conversation
    workload = chat_workload(tokenizer, n_sessions=1, turns=3, system_len=32, output_max=8, max_len=128)
else:
    workload = chat_workload(tokenizer, n_sessions=4, turns=4)
report = run_serving_benchmark(model, workload, generate_with_cache=generate_with_cache,
                               progress=not SMALL)
print(report.table())
report.plot()
plt.show()
