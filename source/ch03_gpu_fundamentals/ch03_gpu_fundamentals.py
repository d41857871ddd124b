# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   llmcourse:
#     chapter: ch03_gpu_fundamentals
# ---

# %% [markdown]
# # Chapter 3 · GPU Fundamentals
# ## 第3章 GPU架构原理
#
# Every later chapter of this course makes one of two numbers smaller: the bytes a step
# moves, or the time a step wastes. This chapter gives you the instruments to tell which
# one matters. A GPU has two ceilings: how many bytes per second its memory delivers and
# how many floating-point operations per second its cores do. A kernel that does few
# operations per byte waits for memory; one that does many waits for arithmetic; one
# that reaches neither ceiling waits for something else (Python, kernel launches, the
# framework). Which of the three holds decides which optimization pays.
#
# **Learning goals · 学习目标**
#
# 1. Add up what serving a model needs in memory (weights, KV cache, activations) for
#    real model shapes, and say whether a batch fits on an H100 80 GB or an H200 141 GB.
# 2. Count the FLOPs and bytes of a GEMM, a GEMV and decode attention; turn them into a
#    roofline time, and classify a measured step as memory-, compute- or overhead-bound.
# 3. Measure this machine's ceilings, and place the course model's own prefill and decode
#    steps on its roofline, beside an 8B model on the datasheet roofs of an H100 and an
#    H200.
# 4. Write four Triton kernels (vector add, fused RMSNorm, fused softmax, tiled matmul)
#    and know what makes them correct (masks, float32 accumulation, subtracting the row
#    maximum) and what makes them fast (one pass over memory; tiles that reuse what they
#    load).
# 5. Profile a decode step with `torch.profiler`, find where its time goes, and answer
#    questions from the trace.
#
# **Why it matters in money.** At batch 1, a decode step of Llama-3.1-8B in BF16 reads
# about 15.0 GB of weights; on an H100 SXM (3.35 TB/s) no kernel can make more than about
# 223 tokens/s from that [@meta2024-llama3] [@nvidia-h100-datasheet]. The GPU's 989.4 BF16
# TFLOPS [@nvidia-h100-datasheet] sit almost idle: a GPU-hour bought for its arithmetic
# is spent waiting for memory. The two levers this chapter measures, a larger batch
# (more FLOPs per byte) and a GPU with more bandwidth (the H200's 4.8 TB/s
# [@nvidia-h200-datasheet]), are what the ROI box of section 6 turns into cost per
# million tokens.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false}
import json
import math
import os
import statistics
import time
from pathlib import Path

if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():  # no GPU: Triton kernels run in its interpreter
        os.environ["TRITON_INTERPRET"] = "1"

import torch
import triton
import triton.language as tl

import course_config

SMALL = course_config.SMALL_WORKLOAD  # True under `make test`: shorter measurements
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
_ = torch.manual_seed(0)  # seed the demos; `_ =` keeps the Generator out of the output

# Model shapes as Hugging Face `config.json` files write them.
COURSE_LM = json.loads((Path(course_config.MODELS["course-lm"]) / "config.json").read_text())
LLAMA_3_1_8B = {  # [@meta2024-llama3]
    "num_hidden_layers": 32, "hidden_size": 4096, "num_attention_heads": 32,
    "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 14336,
    "vocab_size": 128256, "tie_word_embeddings": False}
# Datasheet ceilings, SXM parts, dense BF16 [@nvidia-h100-datasheet] [@nvidia-h200-datasheet].
# Memory in bytes as printed (80 GB = 80e9 bytes), bandwidth in bytes/s.
H100_SXM = {"name": "H100 SXM", "memory_bytes": 80e9, "bytes_per_s": 3.35e12, "flops_per_s": 989.4e12}
H200 = {"name": "H200", "memory_bytes": 141e9, "bytes_per_s": 4.8e12, "flops_per_s": 989.4e12}

# %%
# What the demonstrations use (the exercises need only the setup cell above).
import matplotlib.pyplot as plt

from llmopt.device import calibrate, synchronize
from llmopt.engine import Engine, KVView
from llmopt.plots import PALETTE, RooflinePoint, roofline, use_course_style

use_course_style()

# %% [markdown]
# ## 1. What serving a model holds in memory
# ### 1. 推理服务的显存构成
#
# A serving GPU holds three things.
#
# - **Weights**: every parameter, at the bytes of its format (2 for BF16). For a Llama
#   block that is the attention projections $q, k, v, o$, the MLP's gate, up and down
#   matrices and two RMSNorm weight vectors; around the blocks, the token embedding, the
#   final norm and the LM head, which some models **tie** to the embedding (one matrix
#   serves both, as in the course model).
# - **KV cache**: for every token of every sequence in the batch, a key and a value
#   vector per KV head per layer: $2 \cdot n_\text{layers} \cdot n_\text{kv heads} \cdot
#   d_\text{head} \cdot b$ bytes per token. Grouped-query attention (GQA) shares each KV
#   head among several query heads: Llama-3.1-8B has 32 query heads and 8 KV heads, so
#   128 KiB per token in BF16 instead of 512 KiB [@meta2024-llama3].
# - **Activations**: the working tensors of a forward pass. They live only during a step,
#   so what counts is the peak. In this chapter's model of it, a step works on at most a
#   `prefill_chunk` of tokens at a time (chunked prefill, chapter 6), and its largest
#   tensors are the MLP's: for each token the input ($d$) and the gate and up outputs
#   ($2 \cdot d_\text{mlp}$); on top of that, float32 logits over the vocabulary for one
#   token of each sequence. Real engines also keep workspace for their kernels and for
#   CUDA itself, which is why only part of the card is **usable** for all of this (90 %
#   in this chapter: an assumption; serving engines let you set this share).
#
# **Exercise 1 · 练习1.** Write the four functions below. `config` is a dict with the keys
# of a Hugging Face `config.json` (see `COURSE_LM` and `LLAMA_3_1_8B` in the setup cell);
# `head_dim` may be missing, and is then `hidden_size // num_attention_heads`. There are no
# biases.

# %% nbgrader={"grade": false, "grade_id": "serving_memory_solution", "locked": false, "schema_version": 3, "solution": true}
def parameter_count(config):
    """Parameters of a Llama-family model (an int): token embedding, per block the q, k,
    v, o projections, gate, up and down matrices and two norm vectors, the final norm, and
    an LM head unless `tie_word_embeddings` is true (then the embedding serves as both)."""
    ### BEGIN SOLUTION
    d, n_layers = config["hidden_size"], config["num_hidden_layers"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or d // heads
    mlp, vocab = config["intermediate_size"], config["vocab_size"]
    attention = d * heads * head_dim * 2 + d * kv_heads * head_dim * 2  # q, o; k, v
    block = attention + 3 * d * mlp + 2 * d  # + gate, up, down; two norms
    head = 0 if config.get("tie_word_embeddings") else vocab * d
    return vocab * d + n_layers * block + d + head
    ### END SOLUTION


def kv_bytes_per_token(config, bytes_per_element=2):
    """Bytes of KV cache one token takes: a key and a value per KV head per layer."""
    ### BEGIN SOLUTION
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    return 2 * config["num_hidden_layers"] * config["num_key_value_heads"] * head_dim * bytes_per_element
    ### END SOLUTION


def serving_memory(config, batch, context, weight_bytes=2, kv_bytes=2, activation_bytes=2,
                   prefill_chunk=512):
    """Bytes needed to serve `batch` sequences of up to `context` tokens each, as a dict
    with the keys "weights", "kv_cache", "activations" and "total" (their sum):
    weights = parameters x weight_bytes; kv_cache = batch x context x KV bytes per token
    (at kv_bytes per element); activations = prefill_chunk x (hidden_size + 2 x
    intermediate_size) x activation_bytes + batch x vocab_size x 4 (float32 logits)."""
    ### BEGIN SOLUTION
    weights = parameter_count(config) * weight_bytes
    kv_cache = batch * context * kv_bytes_per_token(config, kv_bytes)
    activations = (prefill_chunk * (config["hidden_size"] + 2 * config["intermediate_size"]) * activation_bytes
                   + batch * config["vocab_size"] * 4)
    return {"weights": weights, "kv_cache": kv_cache, "activations": activations,
            "total": weights + kv_cache + activations}
    ### END SOLUTION


def max_batch(config, gpu_bytes, context, usable=0.9, **formats):
    """The largest batch (an int >= 0) whose serving_memory(config, batch, context,
    **formats)["total"] is at most usable x gpu_bytes; 0 when not even the weights and one
    step's activations at batch 0 fit."""
    ### BEGIN SOLUTION
    budget = usable * gpu_bytes
    fixed = serving_memory(config, 0, context, **formats)["total"]
    if fixed > budget:
        return 0
    per_sequence = serving_memory(config, 1, context, **formats)["total"] - fixed
    batch = int((budget - fixed) // per_sequence)
    while serving_memory(config, batch + 1, context, **formats)["total"] <= budget:  # float rounding
        batch += 1
    while batch > 0 and serving_memory(config, batch, context, **formats)["total"] > budget:
        batch -= 1
    return batch
    ### END SOLUTION


# %% [markdown]
# The checks count the course model's parameters in its checkpoint file, and expect
# about 8.03 billion for Llama-3.1-8B's shape: the "8B" of its name.

# %% nbgrader={"grade": true, "grade_id": "serving_memory", "locked": true, "points": 6, "schema_version": 3, "solution": false}
from safetensors.torch import load_file

_tensors = load_file(str(Path(course_config.MODELS["course-lm"]) / "model.safetensors"))
_in_file = sum(t.numel() for t in _tensors.values())  # tied: the embedding is stored once
assert parameter_count(COURSE_LM) == _in_file, \
    f"course model: {parameter_count(COURSE_LM):,} parameters, the checkpoint holds {_in_file:,}"
assert abs(parameter_count(LLAMA_3_1_8B) / 8.03e9 - 1) < 0.005, \
    f"Llama-3.1-8B: {parameter_count(LLAMA_3_1_8B):,} parameters, expected about 8.03e9 (is the LM head untied?)"
assert kv_bytes_per_token(LLAMA_3_1_8B) == 128 * 1024, "Llama-3.1-8B in BF16: 128 KiB per token (K and V)"
_memory = serving_memory(LLAMA_3_1_8B, 8, 4096)
assert set(_memory) == {"weights", "kv_cache", "activations", "total"}
assert _memory["total"] == _memory["weights"] + _memory["kv_cache"] + _memory["activations"]
assert _memory["kv_cache"] == 8 * 4096 * 128 * 1024
_b = max_batch(LLAMA_3_1_8B, H100_SXM["memory_bytes"], 8192)
assert serving_memory(LLAMA_3_1_8B, _b, 8192)["total"] <= 0.9 * 80e9 < serving_memory(LLAMA_3_1_8B, _b + 1, 8192)["total"]
print(f"course model {parameter_count(COURSE_LM):,} parameters; Llama-3.1-8B {parameter_count(LLAMA_3_1_8B):,}")
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch03_gpu_fundamentals/serving_memory")
### END HIDDEN TESTS

# %% [markdown]
# ### Does it fit? · 放得下吗？
#
# The table below asks it for Llama-3.1-8B in BF16 on both cards, at three context
# lengths. The weights are the same 16 GB everywhere; the KV cache is what grows with the
# batch and the context, and it is what the H200's extra 61 GB buys.

# %%
print(f"{'context':>8} {'H100 80 GB':>11} {'H200 141 GB':>12}   (largest batch, 90 % usable)")
for _context in (2048, 8192, 32768):
    _fits = [max_batch(LLAMA_3_1_8B, gpu["memory_bytes"], _context) for gpu in (H100_SXM, H200)]
    print(f"{_context:>8} {_fits[0]:>11} {_fits[1]:>12}")
_parts = serving_memory(LLAMA_3_1_8B, max_batch(LLAMA_3_1_8B, 80e9, 8192), 8192)
_fig, _ax = plt.subplots(figsize=(7, 1.8))
_left = 0
for _name, _color in zip(("weights", "kv_cache", "activations"), ("#0072B2", "#E69F00", "#009E73")):
    _ax.barh([0], [_parts[_name] / 1e9], left=_left, color=_color, label=f"{_name} {_parts[_name] / 1e9:.1f} GB")
    _left += _parts[_name] / 1e9
_ax.axvline(80, color="0.3", linestyle="--", label="H100: 80 GB")
_ax.set_yticks([])
_ax.set_xlabel("GB")
_ax.set_title("Llama-3.1-8B BF16 on an H100 at 8k context, largest batch")
_ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.6), ncol=4)
plt.show()

# %% [markdown]
# The same formula answers the opposite question: a model of about $10^{12}$ parameters
# needs 2 TB in BF16, so "one GPU" is never the unit for it; chapter 7 shows how INT4
# brings such a model onto one 8-GPU node.
#
# ## 2. Arithmetic intensity and the roofline
# ### 2. 算术强度与屋顶线模型
#
# A kernel moves bytes between memory and the cores and does floating-point operations on
# them. Its **arithmetic intensity** is FLOPs per byte moved. A device that moves $W$
# bytes/s and computes $P$ FLOP/s needs at least
#
# $$t_\text{roofline} = \max\!\left(\frac{\text{FLOPs}}{P}, \frac{\text{bytes}}{W}\right)$$
#
# and reaches at most $\min(P, W \cdot \text{intensity})$ FLOP/s: the **roofline**
# [@williams2009-roofline]. The two terms are equal at the **ridge point** $P / W$
# FLOP/byte: about 295 for an H100 SXM in BF16, 206 for an H200 (same arithmetic, more
# bandwidth) [@nvidia-h100-datasheet] [@nvidia-h200-datasheet]. Below the ridge a kernel
# is **memory-bound**, above it **compute-bound**.
#
# - A **GEMM** $(m \times k) \cdot (k \times n)$ does $2mnk$ FLOPs (a multiply and an
#   add per term) and, at best, reads both inputs once and writes the output once:
#   $(mk + kn + mn) \cdot b$ bytes. A weight matrix times a batch of $m$ tokens has
#   intensity about $m$ FLOP/byte in BF16: only a batch of hundreds reaches the ridge.
# - A **GEMV** is the $m = 1$ case, a decode step at batch 1: about 1 FLOP/byte, two
#   orders of magnitude below the ridge. Decode at small batch is memory-bound however
#   fast the tensor cores are.
# - **Decode attention** reads each sequence's cached keys and values once per step and
#   does $4 \cdot n_\text{heads} \cdot L \cdot d_\text{head}$ FLOPs per sequence ($q
#   K^\top$ and the weighted sum of $V$, $2 L d_\text{head}$ each, per query head). Its
#   intensity does not grow with the batch (every sequence has its own cache); GQA raises
#   it by the number of query heads per KV head.
#
# A measured time far above the roofline time means neither memory nor arithmetic is
# what the step waits for: it is **overhead-bound** (Python, framework dispatch, kernel
# launches). This chapter calls a step overhead-bound when it takes more than
# `overhead_factor` (default 4) times its roofline time; otherwise it is bound by the
# larger of its two terms.
#
# **Exercise 2 · 练习2.** Write the four functions. Bytes count everything read and
# written, as the copy bandwidth of `llmopt.device.calibrate` does.

# %% nbgrader={"grade": false, "grade_id": "roofline_solution", "locked": false, "schema_version": 3, "solution": true}
def matmul_cost(m, n, k, bytes_per_element=2):
    """(FLOPs, bytes) of an (m x k) @ (k x n) product: 2 m n k FLOPs; both inputs read
    once and the output written once, all at bytes_per_element."""
    ### BEGIN SOLUTION
    return 2.0 * m * n * k, float((m * k + k * n + m * n) * bytes_per_element)
    ### END SOLUTION


def decode_attention_cost(batch, context, n_heads, n_kv_heads, head_dim, bytes_per_element=2):
    """(FLOPs, bytes) of one decode step's attention: each of `batch` sequences has one
    query token with n_heads heads and `context` cached tokens with n_kv_heads KV heads.
    FLOPs: 4 x context x head_dim per query head per sequence. Bytes: every cached key and
    value read once, the query read and the output written once (n_heads x head_dim
    each), all at bytes_per_element."""
    ### BEGIN SOLUTION
    flops = 4.0 * batch * n_heads * context * head_dim
    elements = batch * (2 * n_kv_heads * context * head_dim + 2 * n_heads * head_dim)
    return flops, float(elements * bytes_per_element)
    ### END SOLUTION


def roofline_seconds(flops, bytes_moved, flops_per_s, bytes_per_s):
    """The least time a device with these two ceilings needs for this work."""
    ### BEGIN SOLUTION
    return max(flops / flops_per_s, bytes_moved / bytes_per_s)
    ### END SOLUTION


def bottleneck(measured_s, flops, bytes_moved, flops_per_s, bytes_per_s, overhead_factor=4.0):
    """"overhead" if measured_s > overhead_factor x the roofline time; otherwise
    "compute" if the FLOP term of the roofline is the larger (ties too), else "memory"."""
    ### BEGIN SOLUTION
    if measured_s > overhead_factor * roofline_seconds(flops, bytes_moved, flops_per_s, bytes_per_s):
        return "overhead"
    return "compute" if flops / flops_per_s >= bytes_moved / bytes_per_s else "memory"
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "roofline", "locked": true, "points": 6, "schema_version": 3, "solution": false}
_f, _by = matmul_cost(1, 4096, 4096)  # a GEMV: one token through a 4096 x 4096 BF16 weight
assert _f == 2 * 4096 * 4096 and _by == (4096 + 4096 * 4096 + 4096) * 2, "GEMV: 2nk FLOPs; x, W and y once each"
assert 0.99 < _f / _by < 1.0, "a BF16 GEMV does about 1 FLOP per byte"
_f, _by = decode_attention_cost(1, 4096, 32, 8, 128)
assert _f == 4 * 32 * 4096 * 128, "attention FLOPs: 4 x context x head_dim per query head"
assert _by == (2 * 8 * 4096 * 128 + 2 * 32 * 128) * 2, "bytes: K and V of the 8 KV heads, q and the output"
assert roofline_seconds(1e12, 1e9, 1e12, 1e12) == 1.0 and roofline_seconds(1e9, 1e12, 1e12, 1e12) == 1.0
_p, _w = H100_SXM["flops_per_s"], H100_SXM["bytes_per_s"]
_gemv = matmul_cost(1, 4096, 4096)
assert bottleneck(roofline_seconds(*_gemv, _p, _w) * 1.5, *_gemv, _p, _w) == "memory"
_gemm = matmul_cost(4096, 4096, 4096)
assert bottleneck(roofline_seconds(*_gemm, _p, _w) * 1.2, *_gemm, _p, _w) == "compute"
assert bottleneck(roofline_seconds(*_gemv, _p, _w) * 50, *_gemv, _p, _w) == "overhead"
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch03_gpu_fundamentals/roofline")
### END HIDDEN TESTS

# %% [markdown]
# Intensity as a function of the batch: the weight GEMMs climb with it, decode attention
# stays flat. The dashed lines are the two cards' ridge points.

# %%
_batches = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
_fig, _ax = plt.subplots()
_ax.plot(_batches, [(lambda fb: fb[0] / fb[1])(matmul_cost(b, 4096, 14336)) for b in _batches],
         marker="o", label="MLP GEMM, 4096 x 14336 BF16 weight")
_ax.plot(_batches, [(lambda fb: fb[0] / fb[1])(decode_attention_cost(b, 4096, 32, 8, 128)) for b in _batches],
         marker="s", label="decode attention, 4k context, GQA 32/8")
for _gpu, _style in ((H100_SXM, "--"), (H200, ":")):
    _ax.axhline(_gpu["flops_per_s"] / _gpu["bytes_per_s"], color="0.4", linestyle=_style,
                label=f"{_gpu['name']} ridge {_gpu['flops_per_s'] / _gpu['bytes_per_s']:.0f} FLOP/byte")
_ax.set_xscale("log", base=2)
_ax.set_yscale("log")
_ax.set_xlabel("batch (sequences decoded together)")
_ax.set_ylabel("FLOP / byte")
_ax.set_title("Arithmetic intensity of a Llama-3.1-8B decode step's parts")
_ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 3. This machine's roofline, with the course model on it
# ### 3. 本机的屋顶线，以及课程模型的位置
#
# `llmopt.device.calibrate()` measures the two ceilings of the device it runs on: the
# bandwidth of a large copy (bytes read + written) and the rate of a large square matmul.
# On a CPU the numbers are small and noisy, and shared cores make them noisier; the
# method is the same as on an H100. The lines under the table put the datasheet figures
# beside them: a GPU's lead is far larger in arithmetic than in bandwidth, which is why
# its ridge point is so much further right.

# %%
calibration = calibrate(DEVICE)
print(calibration.table())
for _gpu in (H100_SXM, H200):  # datasheet figures, dense BF16
    print(f"{_gpu['name']} datasheet: {_gpu['bytes_per_s'] / calibration.copy_bytes_per_s:,.0f}x this "
          f"machine's copy bandwidth, {_gpu['flops_per_s'] / calibration.matmul_flops_per_s(torch.float32):,.0f}x "
          f"its float32 matmul rate; ridge {_gpu['flops_per_s'] / _gpu['bytes_per_s']:.0f} FLOP/byte, here "
          f"{calibration.ridge_point(torch.float32):.1f}")

# %% [markdown]
# To place a whole forward step of a model on the roofline, count its FLOPs and bytes.
# A step processes `new_tokens` tokens of each of `batch` sequences, each of which
# already has `context` tokens in its KV cache (a **prefill** of a prompt is `context =
# 0, new_tokens = prompt length`; a **decode** step is `new_tokens = 1`).
#
# - FLOPs: $2 \times$ (block linear parameters) per token, the LM head ($2 \cdot d \cdot
#   V$) for one token per sequence (the engine computes logits only where it needs
#   them), and attention: $4 \cdot n_\text{heads} \cdot d_\text{head}$ per layer per
#   (query, visible key) pair. Token $i$ of the new ones (from 0) sees `context` $+ i + 1$
#   keys, itself included.
# - Bytes: every block linear and the LM head read once per step (this is what batching
#   shares), at `weight_bytes`; per layer, the cache's `context` keys and values of every
#   sequence read, and the new tokens' keys and values written, at `kv_bytes`.
#   Norms, the embedding rows and activations are left out: they are small.
#
# **Exercise 3 · 练习3.** Write `step_cost`.

# %% nbgrader={"grade": false, "grade_id": "step_cost_solution", "locked": false, "schema_version": 3, "solution": true}
def step_cost(config, batch, new_tokens, context, weight_bytes=4, kv_bytes=4):
    """(FLOPs, bytes) of one forward step of a Llama-family model, as defined above.
    Block linears: q, k, v, o, gate, up, down (no norms). The LM head is a vocab_size x
    hidden_size matrix whether tied or not."""
    ### BEGIN SOLUTION
    d, n_layers = config["hidden_size"], config["num_hidden_layers"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or d // heads
    linears = n_layers * (2 * d * heads * head_dim + 2 * d * kv_heads * head_dim + 3 * d * config["intermediate_size"])
    head = config["vocab_size"] * d
    tokens = batch * new_tokens
    pairs = batch * (new_tokens * context + new_tokens * (new_tokens + 1) // 2)  # (query, visible key)
    flops = 2.0 * linears * tokens + 2.0 * head * batch + 4.0 * n_layers * heads * head_dim * pairs
    kv_elements = n_layers * 2 * kv_heads * head_dim * batch * (context + new_tokens)  # read + written
    return flops, float((linears + head) * weight_bytes + kv_elements * kv_bytes)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "step_cost", "locked": true, "points": 4, "schema_version": 3, "solution": false}
_f, _by = step_cost(LLAMA_3_1_8B, 1, 1, 0, weight_bytes=2, kv_bytes=2)
assert abs(_by / 15.0e9 - 1) < 0.01, f"8B, batch 1, BF16: about 15.0 GB read per token, got {_by / 1e9:.2f} GB"
_f1, _by1 = step_cost(LLAMA_3_1_8B, 1, 1, 4096, weight_bytes=2, kv_bytes=2)
assert _by1 - _by == 4096 * 128 * 1024, "4,096 cached tokens add 4,096 x 128 KiB of KV reads"
_f64, _by64 = step_cost(LLAMA_3_1_8B, 64, 1, 0, weight_bytes=2, kv_bytes=2)
assert abs(_f64 / _f - 64) < 1e-6 and _by64 - _by == 63 * 128 * 1024, \
    "64 sequences: 64x the FLOPs, the same weight bytes (read once), 64 tokens' new K and V"
print(f"8B decode, batch 1: {_f / _by:.2f} FLOP/byte; batch 64: {_f64 / _by64:.1f}")
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch03_gpu_fundamentals/step_cost")
### END HIDDEN TESTS

# %% [markdown]
# ### Measuring the course model's steps · 实测课程模型的前向步骤
#
# A decode step needs a KV cache holding `context` tokens. Its speed does not depend on
# what the keys and values are, so the cache below holds random ones, of the right shape
# and dtype, and never grows: each step attends to the same `context` cached tokens plus
# the new one. (Chapter 5 builds real caches.) Timing follows the rules of section 7:
# warm-up first, the device synchronised before every clock read, the median of several
# runs.

# %%
class FixedContextCache:
    """A stand-in KV cache for timing: `context` random cached tokens per sequence, the
    same at every step (new keys and values are attended to, then dropped)."""

    def __init__(self, weights, batch, context):
        shape = (batch, weights.n_kv_heads, context, weights.head_dim)
        dtype, device = weights.embed_tokens.dtype, weights.embed_tokens.device
        self.keys = [torch.randn(shape, dtype=dtype, device=device) for _ in weights.layers]
        self.values = [torch.randn(shape, dtype=dtype, device=device) for _ in weights.layers]
        self.positions = torch.arange(context, device=device).expand(batch, context)

    def update(self, layer, keys, values, positions):
        return KVView(torch.cat([self.keys[layer], keys], 2), torch.cat([self.values[layer], values], 2),
                      torch.cat([self.positions, positions], 1))


def median_seconds(fn, repeats, warmup=2):
    """Median wall time of fn(), after `warmup` untimed calls, the device synchronised."""
    for _ in range(warmup):
        fn()
    synchronize(DEVICE)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(DEVICE)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


engine = Engine.from_checkpoint("course-lm")


@torch.inference_mode()
def time_step(batch, new_tokens, context, repeats):
    """Median seconds of one forward step of the course engine (logits of the last token)."""
    cache = FixedContextCache(engine.weights, batch, context) if context else None
    ids = torch.randint(3, COURSE_LM["vocab_size"], (batch, new_tokens))
    positions = torch.arange(context, context + new_tokens).expand(batch, new_tokens)
    last = torch.tensor([-1])
    return median_seconds(lambda: engine.forward(ids, positions, cache, logits_at=last), repeats)


_repeats = 3 if SMALL else 9
STEPS = {  # label -> (batch, new_tokens, context)
    "decode b1 ctx256": (1, 1, 256), "decode b16 ctx256": (16, 1, 256),
    "prefill b1 128 tok": (1, 128, 0)}
if not SMALL:
    STEPS.update({"decode b64 ctx256": (64, 1, 256), "prefill b4 256 tok": (4, 256, 0)})
course_points = []
for _label, (_batch, _new, _context) in STEPS.items():
    _seconds = time_step(_batch, _new, _context, _repeats)
    _f, _by = step_cost(COURSE_LM, _batch, _new, _context)
    _kind = bottleneck(_seconds, _f, _by, calibration.matmul_flops_per_s(torch.float32), calibration.copy_bytes_per_s)
    course_points.append(RooflinePoint(_label, _f, _by, _seconds))
    print(f"{_label:<20} {1e3 * _seconds:7.2f} ms  {_f / _by:6.1f} FLOP/byte  "
          f"{_by / _seconds / 1e9:5.2f} GB/s  {_f / _seconds / 1e9:6.1f} GFLOP/s  -> {_kind}-bound")

# %% [markdown]
# Each step's bytes per second next to the copy bandwidth is its **memory bandwidth
# utilisation** (MBU) [@databricks2023-mbu]; its FLOP/s next to the matmul rate its
# compute utilisation. The plot shows both at once. On a CPU the roof is low and close to
# the slope (a ridge point of a few FLOP/byte, against 295 on an H100 in BF16), so the
# course model's prefill reaches the flat roof at sizes where a GPU would still be
# memory-bound. Its decode steps are another matter: 20 MB of float32 weights take
# milliseconds to read, yet a step can take several times its roofline time. When the
# classifier says "overhead", section 5's profile shows where the rest goes: attention
# and dozens of small operators, each paying PyTorch's dispatch. (On a shared CPU the
# ceilings and the times move from run to run; the method does not.)

# %%
_fig, (_ax_here, _ax_dc) = plt.subplots(1, 2, figsize=(13, 4.6))
roofline(course_points, calibration, dtypes=(torch.float32,), ax=_ax_here,
         title=f"This machine: {calibration.fingerprint.device_name}, course model (fp32)")

# The datasheet roofs of an H100 SXM and an H200, with Llama-3.1-8B's BF16 steps on them at the
# roofline (the best any engine can do): where a step sits on the x axis is a property of
# the model and the batch; how high it can go is a property of the card.
_intensity = [10 ** (i / 20) for i in range(-20, 81)]
for _gpu, _style in ((H100_SXM, "-"), (H200, "--")):
    _ax_dc.plot(_intensity, [min(_gpu["flops_per_s"], _gpu["bytes_per_s"] * x) / 1e12 for x in _intensity],
                color="0.35", linestyle=_style, label=f"{_gpu['name']} roof")
_8b_steps = {"8B decode b1 ctx4k": (1, 1, 4096), "8B decode b64 ctx4k": (64, 1, 4096),
             "8B decode b256 ctx1k": (256, 1, 1024), "8B prefill 2k tokens": (1, 2048, 0)}
for _color, (_label, (_batch, _new, _context)) in zip(PALETTE, _8b_steps.items()):
    _f, _by = step_cost(LLAMA_3_1_8B, _batch, _new, _context, weight_bytes=2, kv_bytes=2)
    for _gpu, _marker in ((H100_SXM, "o"), (H200, "s")):
        _t = roofline_seconds(_f, _by, _gpu["flops_per_s"], _gpu["bytes_per_s"])
        _ax_dc.scatter(_f / _by, _f / _t / 1e12, marker=_marker, color=_color, zorder=3,
                       label=f"{_label} ({_gpu['name']})" if _marker == "o" else None)
_ax_dc.scatter([], [], marker="s", color="0.5", label="squares: H200")
_ax_dc.set_xscale("log")
_ax_dc.set_yscale("log")
_ax_dc.set_xlabel("arithmetic intensity (FLOP/byte)")
_ax_dc.set_ylabel("attainable TFLOP/s")
_ax_dc.set_title("Datasheet roofs, Llama-3.1-8B BF16 at the roofline")
_ax_dc.legend(fontsize=7, loc="lower right")
plt.show()

# %% [markdown]
# Read the right panel from left to right. Decode at batch 1 sits near 1 FLOP/byte and
# gets 43 % more from an H200, exactly its extra bandwidth. At batch 64 with a 4k context
# the KV cache, not the weights, is most of the bytes, so the batch raises intensity far
# less than the weights-only rule "intensity ≈ batch" suggests. Prefill of a 2k-token
# prompt is far right of both ridges: compute-bound, and no faster on the H200, whose
# arithmetic is the same.
#
# ## 4. Triton kernels
# ### 4. Triton 内核
#
# Triton writes a GPU kernel as a Python function over **blocks**: `tl.program_id(0)`
# says which block this program instance handles, `tl.arange(0, BLOCK)` gives the
# offsets inside it, `tl.load` and `tl.store` move whole blocks between memory and
# registers, and a **mask** switches off the lanes past the end of the data. `BLOCK`
# must be a power of two, so almost every kernel needs a mask for its last block. The
# launch `kernel[grid](...)` starts one program per grid entry. Without a GPU, the setup
# cell sets `TRITON_INTERPRET=1`, and every program runs as NumPy code on the CPU: exact
# enough to test correctness on small shapes, useless for speed.
#
# Three exercises build four kernels: the two below, a fused softmax (exercise 5) and a
# tiled matrix multiplication (exercise 6). First:
#
# - **Vector add**, `out = x + y`: one program per block of `BLOCK` elements. Its
#   intensity is 1 FLOP per 12 bytes in float32 (two reads, one write): on any GPU its
#   only goal is the copy bandwidth.
# - **Fused RMSNorm**, `out = x / sqrt(mean(x^2) + eps) * weight` over the last dimension
#   (the norm before every attention and MLP block of a Llama). In PyTorch, unfused, that
#   is several kernels, each reading and writing a tensor of the size of `x`; fused, one
#   program per row loads the row once, reduces it in registers, and writes the result
#   once. Accumulate in float32: in float16 a single square overflows from 256 on, and a
#   sum of squares as soon as it passes 65,504.
#
# **Exercise 4 · 练习4.** Write the two kernels and their launchers. Inputs are
# contiguous; outputs have the input's shape and dtype. The RMSNorm row length $D$ need
# not be a power of two (use `triton.next_power_of_2(D)` for the block, and a mask).

# %% nbgrader={"grade": false, "grade_id": "triton_kernels_solution", "locked": false, "schema_version": 3, "solution": true}
@triton.jit
def vector_add_kernel(x_ptr, y_ptr, out_ptr, n_elements, BLOCK: tl.constexpr):
    """out[i] = x[i] + y[i] for the BLOCK elements of program program_id(0)."""
    ### BEGIN SOLUTION
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # (BLOCK,)
    mask = offsets < n_elements  # the last block runs past the end
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, x + y, mask=mask)
    ### END SOLUTION


def vector_add(x, y, block=1024):
    """x + y for two tensors of the same shape, dtype and device, with vector_add_kernel."""
    ### BEGIN SOLUTION
    if x.shape != y.shape or x.dtype != y.dtype:
        raise ValueError(f"shapes and dtypes must match: {tuple(x.shape)} {x.dtype}, {tuple(y.shape)} {y.dtype}")
    x, y = x.contiguous(), y.contiguous()
    out = torch.empty_like(x)
    n = x.numel()
    if n:
        vector_add_kernel[(triton.cdiv(n, block),)](x, y, out, n, BLOCK=block)
    return out
    ### END SOLUTION


@triton.jit
def rms_norm_kernel(x_ptr, weight_ptr, out_ptr, row_stride, D, eps, BLOCK: tl.constexpr):
    """Row program_id(0) of x (D values, BLOCK >= D a power of two): out = x / sqrt(mean(x^2)
    + eps) * weight, computed in float32, stored in out's dtype."""
    ### BEGIN SOLUTION
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < D
    x = tl.load(x_ptr + row * row_stride + cols, mask=mask, other=0.0).to(tl.float32)  # (BLOCK,)
    mean_square = tl.sum(x * x, axis=0) / D  # masked lanes are 0: divide by D, not BLOCK
    weight = tl.load(weight_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    out = x * (1.0 / tl.sqrt(mean_square + eps)) * weight
    tl.store(out_ptr + row * row_stride + cols, out.to(out_ptr.dtype.element_ty), mask=mask)
    ### END SOLUTION


def rms_norm_triton(x, weight, eps=1e-5):
    """RMSNorm over the last dimension of x (..., D) with weight (D,), by rms_norm_kernel."""
    ### BEGIN SOLUTION
    D = x.shape[-1]
    if weight.shape != (D,):
        raise ValueError(f"weight must be ({D},), got {tuple(weight.shape)}")
    rows = x.reshape(-1, D).contiguous()
    out = torch.empty_like(rows)
    if rows.shape[0]:
        rms_norm_kernel[(rows.shape[0],)](rows, weight.contiguous(), out, rows.stride(0), D, eps,
                                          BLOCK=triton.next_power_of_2(D))
    return out.view(x.shape)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "triton_kernels", "locked": true, "points": 6, "schema_version": 3, "solution": false}
def rms_norm_reference(x, weight, eps=1e-5):
    """The oracle in PyTorch, in float32, returned in x's dtype."""
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)


for _n in (1, 1000, 1024, 4099):
    _x, _y = torch.randn(_n, device=DEVICE), torch.randn(_n, device=DEVICE)
    _sum = vector_add(_x, _y)
    assert _sum.shape == _x.shape and _sum.dtype == _x.dtype, "same shape and dtype as the inputs"
    assert torch.equal(_sum, _x + _y), f"n = {_n}: vector_add differs from x + y (the mask of the last block?)"
for _shape, _dtype, _tol in (((3, 100), torch.float32, 1e-5), ((2, 5, 256), torch.float32, 1e-5),
                             ((4, 1000), torch.float16, 2e-3)):
    _x = torch.randn(_shape, device=DEVICE).to(_dtype)
    _w = torch.randn(_shape[-1], device=DEVICE).to(_dtype)
    _out = rms_norm_triton(_x, _w)
    assert _out.shape == _x.shape and _out.dtype == _dtype, f"{_shape} {_dtype}: same shape and dtype as x"
    _err = ((_out.float() - rms_norm_reference(_x, _w).float()).abs().max() / _w.float().abs().max()).item()
    assert _err < _tol, f"{_shape} {_dtype}: error {_err:.1e} (divide by D, not BLOCK; accumulate in float32)"
_big = torch.full((2, 64), 300.0, device=DEVICE).half()  # 300^2 overflows float16
assert torch.isfinite(rms_norm_triton(_big, torch.ones(64, device=DEVICE).half())).all(), \
    "rows of 300s give inf: square and sum in float32"
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch03_gpu_fundamentals/triton_kernels")
### END HIDDEN TESTS

# %% [markdown]
# ### Achieved bandwidth · 实际达到的带宽
#
# On a GPU the cell below times both kernels on tensors far larger than the L2 cache and
# reports bytes moved per second as a fraction of the calibrated copy bandwidth: the
# number a bandwidth-bound kernel is judged by (the course's GPU check,
# `tools/gpu_check.py`, asks at least 80 % for vector add and 60 % for RMSNorm of the
# reference kernels, to be confirmed on a real card). In the interpreter the same call
# runs NumPy per program: it says nothing about the kernel's speed, and the cell only
# shows that.

# %%
if DEVICE == "cuda":
    _n = 1 << 26
    _x, _y = torch.randn(_n, device="cuda"), torch.randn(_n, device="cuda")
    _seconds = median_seconds(lambda: vector_add(_x, _y), 20)
    print(f"vector add, {_n:,} fp32: {3 * 4 * _n / _seconds / 1e9:,.0f} GB/s = "
          f"{3 * 4 * _n / _seconds / calibration.copy_bytes_per_s:.0%} of copy")
    _rows = torch.randn(8192, 4096, device="cuda").half()
    _w = torch.ones(4096, device="cuda").half()
    _seconds = median_seconds(lambda: rms_norm_triton(_rows, _w), 20)
    print(f"RMSNorm 8192 x 4096 fp16: {2 * _rows.numel() * 2 / _seconds / 1e9:,.0f} GB/s = "
          f"{2 * _rows.numel() * 2 / _seconds / calibration.copy_bytes_per_s:.0%} of copy")
else:
    _x, _y = torch.randn(1 << 16), torch.randn(1 << 16)
    _seconds = median_seconds(lambda: vector_add(_x, _y), 3)
    print(f"interpreter: vector add of 65,536 floats takes {1e3 * _seconds:.1f} ms, "
          f"{1e6 * median_seconds(lambda: _x + _y, 3):.0f} us in PyTorch: correctness only here")

# %% [markdown]
# ### Fused softmax · 融合Softmax
#
# Softmax turns a row of scores into probabilities, $p_i = e^{x_i} / \sum_j e^{x_j}$: the
# attention weights of every head come from one, and so does the distribution a sampler
# draws the next token from. Three things make a softmax kernel right and fast.
#
# - **Subtract the row maximum.** $e^x$ overflows float32 from $x \approx 88.7$ on (the
#   natural log of float32's largest value, $3.4 \cdot 10^{38}$), and $\infty / \infty$ is
#   NaN. Since $e^{x_i - m} / \sum_j e^{x_j - m}$ is the same number for every $m$, take
#   $m = \max_j x_j$: every exponent is then at most 0, the largest term is exactly 1, and
#   the sum lies between 1 and the row length.
# - **Pad with $-\infty$.** The block is the next power of two at or above the row
#   length, and the lanes past the row must change neither the maximum nor the sum.
#   Loaded as $-\infty$ they do neither ($e^{-\infty} = 0$). Loaded as 0 they add
#   $e^{-m}$ each to the sum, and they become the maximum of a row whose scores are all
#   negative.
# - **Fuse.** Written as five PyTorch operations (max, subtract, exp, sum, divide), the
#   softmax of an $M \times N$ tensor reads it five times and writes three tensors of its
#   size: $8MN$ elements of traffic, counting the row maxima and sums as nothing. It does
#   a handful of FLOPs per element, so that traffic is its time. One program per row that
#   loads the row once, reduces it in registers and writes the result once moves $2MN$:
#   four times fewer bytes, at the same bandwidth four times less time.
#
# **Longer rows: the online maximum.** One block per row works while a row fits in one
# program's registers. A row of 128k logits does not; a kernel then walks the row block by
# block, keeping a running maximum $m$ and a running sum $s$ of $e^{x - m}$. When a block
# raises the maximum to $m'$, the sum so far is rescaled, $s \leftarrow s\,e^{m - m'} +
# \sum_\text{block} e^{x - m'}$, so the maximum and the sum cost one pass over memory
# instead of two [@milakov2018-online-softmax]. Chapter 5's paged-attention kernel runs
# the same rescaling over tiles of cached keys.
#
# **Exercise 5 · 练习5.** Write `softmax_kernel` and its launcher `softmax_triton(x)`:
# the softmax over the last dimension of x (..., N), float32 or float16 (bfloat16 too on a
# GPU), for any N >= 1, computed in float32 and returned in x's shape and dtype. x may be
# a view whose rows are not next to each other in memory (a slice of a wider tensor):
# pass the row stride, or make it contiguous. Scores may be $-\infty$ (masked positions,
# as in causal attention), but every row has a finite one.

# %% nbgrader={"grade": false, "grade_id": "triton_softmax_solution", "locked": false, "schema_version": 3, "solution": true}
@triton.jit
def softmax_kernel(x_ptr, out_ptr, x_row_stride, out_row_stride, n_cols, BLOCK: tl.constexpr):
    """Row program_id(0) of x (n_cols values, BLOCK >= n_cols a power of two): out =
    exp(x - max(x)) / sum(exp(x - max(x))), computed in float32, stored in out's dtype."""
    ### BEGIN SOLUTION
    row = tl.program_id(0).to(tl.int64)  # row x stride passes 2^31 on large tensors
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * x_row_stride + cols, mask=mask, other=-float("inf")).to(tl.float32)  # (BLOCK,)
    numerator = tl.exp(x - tl.max(x, axis=0))  # at most 1; the padded lanes give exp(-inf) = 0
    out = numerator / tl.sum(numerator, axis=0)
    tl.store(out_ptr + row * out_row_stride + cols, out.to(out_ptr.dtype.element_ty), mask=mask)
    ### END SOLUTION


def softmax_triton(x):
    """Softmax over the last dimension of x (..., N) by softmax_kernel, one program per row;
    the output has x's shape and dtype."""
    ### BEGIN SOLUTION
    n_cols = x.shape[-1]
    rows = x.reshape(-1, n_cols)  # a view where it can be: rows some stride apart
    if rows.stride(-1) != 1:
        rows = rows.contiguous()  # the kernel reads a row's values side by side
    out = torch.empty(rows.shape, dtype=x.dtype, device=x.device)
    if rows.numel():
        block = triton.next_power_of_2(n_cols)
        softmax_kernel[(rows.shape[0],)](rows, out, rows.stride(0), out.stride(0), n_cols, BLOCK=block,
                                         num_warps=4 if block < 2048 else 8 if block < 8192 else 16)
    return out.view(x.shape)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "triton_softmax", "locked": true, "points": 4, "schema_version": 3, "solution": false}
for _shape, _dtype, _tol in (((3, 100), torch.float32, 1e-6), ((2, 4, 256), torch.float32, 1e-6),
                             ((1, 1), torch.float32, 0.0), ((5, 1000), torch.float16, 1e-3)):
    _x = (torch.randn(_shape, device=DEVICE) * 3).to(_dtype)
    _p = softmax_triton(_x)
    assert _p.shape == _x.shape and _p.dtype == _dtype, f"{_shape} {_dtype}: same shape and dtype as x"
    _err = (_p.float() - torch.softmax(_x.float(), -1)).abs().max().item()
    assert _err <= _tol, f"{_shape} {_dtype}: error {_err:.1e} (pad the row with -inf, not 0; divide by the row's sum)"
_huge = torch.tensor([[1000.0, 999.0, 998.0], [-1000.0, -1001.0, -1002.0]], device=DEVICE)
assert torch.isfinite(softmax_triton(_huge)).all(), "scores of +-1000 give inf or NaN: subtract the row maximum"
_wide = torch.randn(4, 50, device=DEVICE)
assert torch.allclose(softmax_triton(_wide[:, 5:35]), torch.softmax(_wide[:, 5:35], -1), atol=1e-6), \
    "a slice of a wider tensor: rows are x.stride(0) elements apart, not N"
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch03_gpu_fundamentals/triton_softmax")
### END HIDDEN TESTS

# %% [markdown]
# ### What fusion saves · 融合省下了什么
#
# The byte count, measured: the five-operation softmax against `torch.softmax`, one
# operator that finishes a row while it is still in the cache, on a tensor larger than
# this machine's caches. The count predicts four times; where the exponentials' arithmetic
# rather than memory sets the pace (a CPU's few cores), the gain is smaller. (On a GPU,
# the throughput cell after exercise 6 times the Triton kernel itself.)

# %%
def softmax_five_operations(x):
    """Softmax as five PyTorch operations: each one is a pass over memory."""
    row_max = x.max(-1, keepdim=True).values
    shifted = x - row_max
    numerator = shifted.exp()
    return numerator / numerator.sum(-1, keepdim=True)


_scores = torch.randn(2048 if SMALL else 8192, 4096, device=DEVICE)  # 32 MB in float32 (128 MB at full size)
_unfused = median_seconds(lambda: softmax_five_operations(_scores), 5)
_fused = median_seconds(lambda: torch.softmax(_scores, -1), 5)
print(f"softmax of {tuple(_scores.shape)} float32 on {DEVICE}: five operations {1e3 * _unfused:.1f} ms, "
      f"torch.softmax {1e3 * _fused:.1f} ms ({_unfused / _fused:.1f}x); at 2 x 4 bytes per element the "
      f"fused one moves {2 * 4 * _scores.numel() / _fused / calibration.copy_bytes_per_s:.0%} of the copy bandwidth")

# %% [markdown]
# ### Tiled matmul · 分块矩阵乘法
#
# A matrix multiplication $C = AB$, $(M \times K) \cdot (K \times N)$, is where a model
# spends its FLOPs, and the one kernel of this chapter that can be compute-bound. In
# Triton, each program computes one **tile** of $C$: `BLOCK_M` rows by `BLOCK_N` columns,
# on a 2-D grid of `cdiv(M, BLOCK_M)` × `cdiv(N, BLOCK_N)` programs. A tile needs its
# `BLOCK_M` rows of $A$ and `BLOCK_N` columns of $B$, all $K$ of each, and cannot hold
# them at once. So it walks $K$ in steps of `BLOCK_K`: load a `BLOCK_M` × `BLOCK_K` tile
# of $A$ and a `BLOCK_K` × `BLOCK_N` tile of $B$, add their product to a `BLOCK_M` ×
# `BLOCK_N` accumulator (`tl.dot`, on the tensor cores of a GPU), move on.
#
# - **Why tiles.** Every element a step loads feeds a whole row or column of the tile:
#   an element of $A$ is used `BLOCK_N` times, one of $B$ `BLOCK_M` times. A step loads
#   $(\text{BLOCK\_M} + \text{BLOCK\_N}) \cdot \text{BLOCK\_K}$ elements and does $2 \cdot
#   \text{BLOCK\_M} \cdot \text{BLOCK\_N} \cdot \text{BLOCK\_K}$ FLOPs, so the tile's
#   arithmetic intensity is $2 \cdot \text{BLOCK\_M} \cdot \text{BLOCK\_N} /
#   ((\text{BLOCK\_M} + \text{BLOCK\_N}) \cdot b)$ FLOP per byte loaded: it grows with
#   the tile, not with $K$. The table below the exercise computes it.
# - **Why the `BLOCK_K` loop.** A program's storage holds one step's input tiles and the
#   accumulator, whatever $K$ is (14,336 for a Llama-3.1-8B down projection). On a GPU
#   the compiler also loads the next steps' tiles while the current one is multiplied
#   (`num_stages`).
# - **Masks on three edges.** $M$, $N$ and $K$ are rarely multiples of the blocks. Rows
#   past $M$ and columns past $N$ are loaded as 0 and never stored; in the last step of
#   the loop the lanes past $K$ must be loaded as 0 in *both* tiles, or the products of
#   whatever lies beyond the end of a row are added in.
# - **A float32 accumulator.** `tl.dot` of two float16 tiles returns float32. Keep the
#   running sum there and round to the output's dtype once, at the store: a float16 sum
#   that has grown large drops the small terms added to it (a pitfall in section 6 shows
#   it stalling).
# - **Strides.** Element $(i, j)$ of a matrix sits at `ptr + i * stride_0 + j * stride_1`.
#   Passing both strides of each matrix makes the kernel take any layout without a copy:
#   a linear layer computes $x W^\top$ with its weight stored as (out, in), so its $B$ is a
#   transposed view.
#
# Float32 inputs need one more word: on a GPU, `tl.dot` rounds float32 inputs to TF32
# unless told `input_precision="ieee"` (the argument only concerns float32 inputs), and
# TF32 is off by more than the tests allow.
#
# **Exercise 6 · 练习6.** Write `matmul_kernel` and its launcher `matmul_triton(a, b)`:
# a (M, K) and b (K, N) of one dtype, float32 or float16 (bfloat16 too on a GPU; the
# interpreter's `tl.dot` mishandles it), any strides; returns C (M, N), contiguous, in
# that dtype. M, N and K are any sizes from 1 up; the tests use sizes that no power of
# two divides, a transposed b and a sliced a. Choose the tiles in the launcher (at least
# 16 in every dimension, as `tl.dot` asks): large on a GPU, small in the interpreter, so
# that small tests cross every edge.

# %% nbgrader={"grade": false, "grade_id": "triton_matmul_solution", "locked": false, "schema_version": 3, "solution": true}
@triton.jit
def matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K,
                  stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Tile (program_id(0), program_id(1)) of C = A @ B: rows [program_id(0) * BLOCK_M,
    +BLOCK_M) and columns [program_id(1) * BLOCK_N, +BLOCK_N) of C, summed over K in steps of
    BLOCK_K into a float32 accumulator, stored in C's dtype. Element (i, j) of X is at
    x_ptr + i * stride_x0 + j * stride_x1 (stride_am, stride_ak for A, and so on)."""
    ### BEGIN SOLUTION
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,) rows of A and C
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # (BLOCK_N,) columns of B and C
    steps = tl.arange(0, BLOCK_K)  # (BLOCK_K,) positions inside one step of K
    a_tile = a_ptr + rows[:, None] * stride_am + steps[None, :] * stride_ak  # (BLOCK_M, BLOCK_K) addresses
    b_tile = b_ptr + steps[:, None] * stride_bk + cols[None, :] * stride_bn  # (BLOCK_K, BLOCK_N) addresses
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, K, BLOCK_K):
        in_k = steps < K - k  # the last step may run past K: those lanes load 0 in both tiles
        a = tl.load(a_tile, mask=(rows[:, None] < M) & in_k[None, :], other=0.0)
        b = tl.load(b_tile, mask=in_k[:, None] & (cols[None, :] < N), other=0.0)
        acc += tl.dot(a, b, input_precision="ieee")  # float32 (BLOCK_M, BLOCK_N); ieee: no TF32
        a_tile += BLOCK_K * stride_ak
        b_tile += BLOCK_K * stride_bk
    c_tile = c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn
    tl.store(c_tile, acc.to(c_ptr.dtype.element_ty), mask=(rows[:, None] < M) & (cols[None, :] < N))
    ### END SOLUTION


def matmul_triton(a, b, *, block_m=None, block_n=None, block_k=None, num_warps=None, num_stages=None):
    """C = a @ b by matmul_kernel: a (M, K) and b (K, N) of one dtype, any strides; C (M, N)
    contiguous, in that dtype. The keyword arguments are tuning knobs; the grader never
    passes them."""
    ### BEGIN SOLUTION
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
        raise ValueError(f"need a (M, K) and b (K, N) of one dtype, got {tuple(a.shape)} {a.dtype} "
                         f"and {tuple(b.shape)} {b.dtype}")
    (M, K), N = a.shape, b.shape[1]
    c = torch.empty((M, N), dtype=a.dtype, device=a.device)
    if not a.is_cuda:  # the interpreter: small tiles, so that small shapes cross every edge
        tiles = (32, 32, 32, 4, 1)
    elif a.dtype == torch.float32:  # IEEE float32 on the CUDA cores: 4-byte tiles, smaller
        tiles = (64, 64, 32, 4, 3)
    else:  # 16-bit on the tensor cores: 128 x 256 tiles, 85 FLOP per byte loaded
        tiles = (128, 256, 64, 8, 3)
    block_m, block_n, block_k, num_warps, num_stages = (
        knob if knob is not None else default
        for knob, default in zip((block_m, block_n, block_k, num_warps, num_stages), tiles))
    if M and N:
        matmul_kernel[(triton.cdiv(M, block_m), triton.cdiv(N, block_n))](
            a, b, c, M, N, K, a.stride(0), a.stride(1), b.stride(0), b.stride(1), c.stride(0), c.stride(1),
            BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=num_warps, num_stages=num_stages)
    return c
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "triton_matmul", "locked": true, "points": 6, "schema_version": 3, "solution": false}
def matmul_reference(a, b):
    """The oracle: float64 on the CPU."""
    return a.cpu().double() @ b.cpu().double()


for (_m, _n, _k), _dtype, _tol in (((1, 1, 1), torch.float32, 1e-5), ((20, 40, 50), torch.float32, 1e-5),
                                   ((70, 33, 100), torch.float32, 1e-5), ((9, 48, 75), torch.float16, 2e-3)):
    _a = torch.randn(_m, _k, device=DEVICE).to(_dtype)
    _b = torch.randn(_k, _n, device=DEVICE).to(_dtype)
    _c = matmul_triton(_a, _b)
    assert _c.shape == (_m, _n) and _c.dtype == _dtype, f"(M, N, K) = {(_m, _n, _k)}: C is (M, N) in a's dtype"
    _want = matmul_reference(_a, _b)
    _err = ((_c.cpu().double() - _want).abs().max() / _want.abs().max()).item()
    assert _err <= _tol, (f"(M, N, K) = {(_m, _n, _k)} {_dtype}: error {_err:.1e} of the largest output (mask "
                          f"rows past M, columns past N and, in the last step, lanes past K)")
_weight = torch.randn(24, 60, device=DEVICE)  # a linear layer's (out, in) weight: x @ weight.T
_x = torch.randn(5, 60, device=DEVICE)
assert torch.allclose(matmul_triton(_x, _weight.T), _x @ _weight.T, atol=1e-4), \
    "b = weight.T is a transposed view: use b's strides (or copy it)"
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch03_gpu_fundamentals/triton_matmul")
### END HIDDEN TESTS

# %% [markdown]
# The tile's arithmetic intensity, for a few tile shapes in BF16 (2 bytes), against the
# ridge point of an H100 SXM, and the bytes one step's input tiles take:

# %%
_ridge = H100_SXM["flops_per_s"] / H100_SXM["bytes_per_s"]
print(f"{'tile (M x N x K)':>18} {'FLOP/byte loaded':>17} {'inputs per step':>16}   (BF16; H100 SXM ridge {_ridge:.0f})")
for _bm, _bn, _bk in ((16, 16, 16), (32, 32, 32), (64, 64, 32), (128, 128, 64), (128, 256, 64)):
    _intensity = 2 * _bm * _bn / ((_bm + _bn) * 2)
    print(f"{f'{_bm} x {_bn} x {_bk}':>18} {_intensity:>17.1f} {(_bm + _bn) * _bk * 2 / 1024:>13.0f} KiB")

# %% [markdown]
# Even a 128 × 256 tile loads one byte per 85 FLOPs, well left of the H100's ridge: if
# every load went to the GPU's memory, a tiled matmul would be memory-bound. It is not,
# because programs that run at the same time share tiles: the programs of one row of the
# grid read the same rows of $A$, and a tile one of them loaded is found by the others in
# the L2 cache, on the chip. How much of that reuse a kernel gets depends on the order
# its programs run in; Triton's matmul tutorial reorders them in groups for that reason
# [@triton-matmul-tutorial]. Larger tiles are bounded by what a program can keep on the
# chip: the accumulator alone is 128 KiB of float32 at 128 × 256.
#
# ### Achieved throughput · 实际达到的吞吐
#
# On a GPU the cell below times the two new kernels beside PyTorch on the same data:
# softmax in bytes per second against the calibrated copy bandwidth (it is memory-bound),
# the matmul in FLOP/s against the calibrated BF16 matmul rate that
# `llmopt.device.calibrate` measured with `torch.matmul` (it is compute-bound). The
# course's GPU check asks the reference kernels for at least 60 % and 50 % of those
# ceilings (goals set before a GPU ran them). In the interpreter nothing here would be a
# measurement of the kernels.

# %%
if DEVICE == "cuda":
    print(f"{calibration.fingerprint.device_name}: copy {calibration.copy_bytes_per_s / 1e9:,.0f} GB/s, "
          f"BF16 matmul {calibration.matmul_flops_per_s(torch.bfloat16) / 1e12:,.0f} TFLOP/s (calibrated)")
    _scores = torch.randn(8192, 4096, device="cuda").half()
    _bytes = 2 * _scores.numel() * 2  # read once, written once
    for _name, _fn in (("Triton softmax", lambda: softmax_triton(_scores)),
                       ("torch.softmax", lambda: torch.softmax(_scores, -1))):
        _seconds = median_seconds(_fn, 20)
        print(f"{_name:>15}, 8192 x 4096 fp16: {_bytes / _seconds / 1e9:,.0f} GB/s = "
              f"{_bytes / _seconds / calibration.copy_bytes_per_s:.0%} of copy")
    _a = torch.randn(8192, 8192, device="cuda").bfloat16()
    _b = torch.randn(8192, 8192, device="cuda").bfloat16()
    _flops = 2 * 8192**3
    for _name, _fn in (("Triton matmul", lambda: matmul_triton(_a, _b)), ("torch.matmul", lambda: _a @ _b)):
        _seconds = median_seconds(_fn, 10)
        print(f"{_name:>15}, 8192^3 bf16: {_flops / _seconds / 1e12:,.0f} TFLOP/s = "
              f"{_flops / _seconds / calibration.matmul_flops_per_s(torch.bfloat16):.0%} of the calibrated BF16 matmul")
else:
    print("interpreter: every program runs as NumPy code, so the kernels' speed is not measured here; "
          "the checks above are about correctness only")

# %% [markdown]
# ## 5. Profiling a decode step
# ### 5. 用 torch.profiler 剖析解码步骤
#
# A roofline says how far a step is from its ceilings; a profiler says where its time
# goes. `torch.profiler.profile` records every operator PyTorch runs (and, on a GPU,
# every CUDA kernel). Each recorded event has a `name` and a `self_cpu_time_total` in
# microseconds: the time spent in the operator itself, not in the operators it called
# (`aten::matmul` calls `aten::mm`; counting both totals would count the matmul twice).
#
# **Exercise 7 · 练习7.** Write `top_operators`: from a list of `(name, self_us)` pairs,
# one per recorded call, the `k` operators with the most self time in total.

# %% nbgrader={"grade": false, "grade_id": "profile_summary_solution", "locked": false, "schema_version": 3, "solution": true}
def top_operators(events, k=5):
    """events: (name, self_us) pairs, one per call. Returns up to k tuples (name, total_us,
    calls, share), where total_us sums the self times of that name's calls, calls counts
    them and share = total_us / (self time of all events). Sorted by total_us, largest
    first; equal totals by name. Empty events: []."""
    ### BEGIN SOLUTION
    totals, calls = {}, {}
    for name, self_us in events:
        totals[name] = totals.get(name, 0.0) + self_us
        calls[name] = calls.get(name, 0) + 1
    everything = sum(totals.values())
    ranked = sorted(totals, key=lambda name: (-totals[name], name))[:k]
    return [(name, totals[name], calls[name], totals[name] / everything if everything else 0.0)
            for name in ranked]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "profile_summary", "locked": true, "points": 4, "schema_version": 3, "solution": false}
_events = [("aten::mm", 30.0), ("aten::add", 2.0), ("aten::mm", 40.0), ("aten::cat", 8.0), ("aten::add", 20.0)]
_top = top_operators(_events, 2)
assert [row[0] for row in _top] == ["aten::mm", "aten::add"], f"ranked by total self time: got {_top}"
assert _top[0][1:] == (70.0, 2, 0.7), f"aten::mm: 70 us in 2 calls, 70 % of 100 us; got {_top[0]}"
assert top_operators([], 3) == []
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch03_gpu_fundamentals/profile_summary")
### END HIDDEN TESTS

# %% [markdown]
# Now the course engine's decode step, at batch 1 and batch 16, 256 tokens of context.
# Before the profiled steps, two untimed ones (warm-up).

# %%
from torch.profiler import ProfilerActivity, profile


@torch.inference_mode()
def profile_decode(batch, context=256, steps=3):
    cache = FixedContextCache(engine.weights, batch, context)
    ids = torch.randint(3, COURSE_LM["vocab_size"], (batch, 1))
    positions = torch.full((batch, 1), context)
    for _ in range(2):
        engine.forward(ids, positions, cache)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE == "cuda" else [])
    with profile(activities=activities) as trace:
        for _ in range(steps):
            engine.forward(ids, positions, cache)
    return [(event.name, event.self_cpu_time_total) for event in trace.events()]


decode_profiles = {}
for _batch in (1, 16):
    decode_profiles[_batch] = profile_decode(_batch)
    print(f"decode, batch {_batch}, context 256: top operators by self CPU time")
    for _name, _us, _calls, _share in top_operators(decode_profiles[_batch], 5):
        print(f"  {_name:<52} {_us / 1e3:7.2f} ms {_calls:5d} calls {_share:6.1%}")

# %% [markdown]
# The matmuls (`aten::mm`) and the attention kernel lead; everything else is many small
# operators whose cost is mostly their call. On a GPU the same table shows each CUDA
# kernel's time beside the CPU time spent launching it, and for a model this small the
# launches win (question Q3). `trace.export_chrome_trace(path)` writes a timeline that
# `chrome://tracing` or Perfetto opens.
#
# ## 6. Pitfalls, checklist, ROI and questions
# ### 6. 常见误区、实战检查清单、ROI与思考题
#
# ### Common pitfalls · 常见误区
#
# **Timing without warm-up.** The first call of a kernel pays for things later calls do
# not: Triton compiles the kernel for its shapes and dtypes (in the interpreter, it
# prepares the function), PyTorch allocates memory and picks algorithms. A benchmark that
# times the first call measures that.

# %%
@triton.jit
def _scale_kernel(x_ptr, out_ptr, n, factor, BLOCK: tl.constexpr):
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    tl.store(out_ptr + offsets, tl.load(x_ptr + offsets, mask=mask) * factor, mask=mask)


def scale(x, factor):
    scaled = torch.empty_like(x)
    _scale_kernel[(triton.cdiv(x.numel(), 1024),)](x, scaled, x.numel(), factor, BLOCK=1024)
    return scaled


_x = torch.randn(4096, device=DEVICE)
_start = time.perf_counter()
scale(_x, 2.0)
synchronize(DEVICE)
_first = time.perf_counter() - _start
_later = median_seconds(lambda: scale(_x, 2.0), 5, warmup=0)
print(f"first call {1e3 * _first:.2f} ms, later calls {1e3 * _later:.2f} ms (median): "
      f"{_first / _later:.1f}x")

# %% [markdown]
# **Timing without a device sync.** A CUDA call returns as soon as the kernel is queued.
# `time.perf_counter()` around it measures how fast Python queues work; the GPU may not
# have started. On a GPU the cell below shows the difference; on a CPU every call is
# synchronous and there is nothing to show, which is exactly why this bug survives
# testing on a laptop.

# %%
if DEVICE == "cuda":
    _a = torch.randn(8192, 8192, device="cuda")
    _a @ _a
    torch.cuda.synchronize()
    _start = time.perf_counter()
    _a @ _a
    _unsynced = time.perf_counter() - _start
    torch.cuda.synchronize()
    _synced = median_seconds(lambda: _a @ _a, 5)
    print(f"8192^3 matmul: {1e3 * _unsynced:.3f} ms without sync, {1e3 * _synced:.2f} ms with sync")
else:
    print("CPU: calls are synchronous; `llmopt.device.synchronize` is a no-op here")

# %% [markdown]
# **Calling a GEMV slow because its FLOP/s are low.** A batch-1 matmul reaches a tiny
# share of the matmul peak, and it would be wrong to call that a slow kernel: it is not
# compute-bound at all. Judged against its real ceiling, bandwidth, it may be doing well.

# %%
_w = torch.randn(4096, 4096)  # 64 MB in float32: larger than the caches
_v = torch.randn(1, 4096)
_seconds = median_seconds(lambda: _v @ _w, 10 if SMALL else 50)
_f, _by = matmul_cost(1, 4096, 4096, bytes_per_element=4)
print(f"GEMV 1 x 4096 x 4096 fp32: {_f / _seconds / calibration.matmul_flops_per_s(torch.float32):.1%} "
      f"of the matmul peak, {_by / _seconds / calibration.copy_bytes_per_s:.0%} of copy bandwidth -> "
      f"{bottleneck(_seconds, _f, _by, calibration.matmul_flops_per_s(torch.float32), calibration.copy_bytes_per_s)}-bound")

# %% [markdown]
# **Squaring in half precision.** RMSNorm's mean of squares overflows float16 as soon as
# an element reaches 256 ($256^2 = 65{,}536$, above float16's largest 65,504), and the
# running sum does once it passes 65,504 (a row of 4,096 values of 4 is enough). Hidden
# states of large models do have outliers that size.

# %%
_row = torch.full((1, 8), 300.0).half()
print("float16 mean of squares:", (_row * _row).mean().item(),
      "| float32:", (_row.float() * _row.float()).mean().item())

# %% [markdown]
# **Accumulating a dot product in half precision.** A running sum in float16 keeps 11
# significant bits: once it reaches 256, its neighbouring values are 0.25 apart, and adding
# 0.1 rounds back to where it was. A matmul that keeps its accumulator in float16 loses
# exactly these small terms of long dot products; `tl.dot` returns float32 so that it
# need not.

# %%
_sum16, _sum32 = torch.tensor(0.0).half(), torch.tensor(0.0)
for _ in range(4096):  # 4,096 x 0.1 = 409.6
    _sum16 += torch.tensor(0.1).half()
    _sum32 += torch.tensor(0.1).half().float()
print(f"4,096 additions of 0.1: float16 running sum {_sum16.item():.2f}, float32 {_sum32.item():.2f}")

# %% [markdown]
# Others, not shown: comparing a measured bandwidth with the datasheet instead of the
# copy bandwidth measured on the same card (ECC and clocks lower the real ceiling);
# counting sparse TFLOPS (twice the dense figure) as the roof; forgetting the KV cache in
# the bytes of a long-context decode step.
#
# ### Practical checklist · 实战检查清单
#
# - Before optimizing, count FLOPs and bytes of the step and compute its roofline time;
#   compare with the measured time. Overhead-bound? Fewer, larger kernels (fusion, CUDA
#   graphs), not faster arithmetic.
# - Measure the ceilings on the deployment card (`llmopt.device.calibrate`) and report
#   achieved bandwidth / FLOP rate as fractions of them.
# - Time with warm-up, a device sync around the clock, and a median.
# - Size a deployment with the whole memory formula: weights, KV at the batch and context
#   you will serve, activations, and the share of the card the engine really gets.
# - Triton: mask every block that can run past the data (all three edges of a matmul's
#   tiles, $K$ included); accumulate reductions and dot products in float32; pad a softmax
#   with $-\infty$ and subtract the row maximum; pass strides rather than copying a
#   transposed weight; test in the interpreter on shapes that no block size divides.
# - Profile before rewriting: rank operators by self time, not total time, and see which
#   group holds the most of it (GEMMs, attention, or the many small operators) before
#   choosing what to optimize.
#
# ### ROI: cost per million tokens from the roofline · ROI：从屋顶线到每百万token成本
#
# At the roofline, a decode step of batch $B$ yields $B$ tokens in $t_\text{roofline}$, so
# cost per million tokens $= \text{price per hour} / (3600 \cdot B / t_\text{roofline})
# \cdot 10^6$. Real engines reach a fraction of the roof (SGLang's batch-1 decoding of
# Llama-3.1-8B on an H100 makes 158.3 tokens/s [@li2025-eagle3], about 71 % of the 223
# tokens/s bound), so these are floors. The prices are **assumptions for illustration**;
# put in your provider's.

# %%
ASSUMED_HOURLY_USD = {"H100 SXM": 2.50, "H200": 3.50}  # assumptions: your prices here


def roofline_cost_per_million(gpu, batch, context):
    flops, bytes_moved = step_cost(LLAMA_3_1_8B, batch, 1, context, weight_bytes=2, kv_bytes=2)
    seconds = roofline_seconds(flops, bytes_moved, gpu["flops_per_s"], gpu["bytes_per_s"])
    return ASSUMED_HOURLY_USD[gpu["name"]] / (3600 * batch / seconds) * 1e6, batch / seconds


for _batch in (1, 16, 64):
    _row = []
    for _gpu in (H100_SXM, H200):
        if _batch > max_batch(LLAMA_3_1_8B, _gpu["memory_bytes"], 4096):
            _row.append(f"{_gpu['name']}: does not fit")
            continue
        _usd, _rate = roofline_cost_per_million(_gpu, _batch, 4096)
        _row.append(f"{_gpu['name']}: {_rate:7,.0f} tok/s, {_usd:.3f} USD/M")
    print(f"Llama-3.1-8B BF16, ctx 4k, batch {_batch:2d} | " + " | ".join(_row))

# %% [markdown]
# Batching cuts the cost per token by the factor the weights are shared over, until the
# KV cache's bytes take over. At decode the step is memory-bound, so the H200's 43 % more
# bandwidth is 43 % more tokens per hour; at the assumed prices (40 % apart) that just
# pays for itself. At another price ratio the answer flips, and this formula says where.
#
# ### Questions · 思考题
#
# Answer each question by returning a value from its function in the cell below (the
# grader computes the answers itself). The grader runs the answer cell with the setup and
# exercise cells only, not the demonstrations: compute from those, or return the value.
#
# **Q1 · H200上的解码上限.** Llama-3.1-8B in BF16, batch 1, on an H200 (4.8 TB/s): how many
# tokens per second at most, if a step reads every block linear and the LM head once and
# nothing else (no KV, no embedding)? (1 % tolerance.)
#
# **Q2 · 何时变成计算受限.** A Llama-3.1-8B MLP down projection multiplies a batch of $B$
# tokens (B x 14,336) by its weight (14,336 x 4,096), BF16, everything read and written
# once (`matmul_cost`). What is the smallest whole $B$ at which its arithmetic intensity
# reaches the H100 SXM's ridge point, 989.4 TFLOPS / 3.35 TB/s? (exact.)
#
# **Q3 · 小模型上GPU的瓶颈.** A decode step of the course model at batch 1, on an H100,
# reads about 20 MB of float32 weights and runs about 80 kernels (more, counting small
# ones: see section 5's profile). Assume each kernel costs at least 5 µs to launch and
# that they run one after another. The step is: **(a)**
# memory-bound; **(b)** compute-bound; **(c)** overhead-bound. Return `"a"`, `"b"` or
# `"c"`.
#
# Q4 and Q5 read a profiler trace: a list of `(name, self_us)` pairs, one per recorded
# call, as section 5's `profile_decode` returns. Your functions receive the trace; the
# grader passes traces it recorded or made, and the cell after the questions runs them on
# the traces this notebook measured.
#
# **Q4 · 矩阵乘占多少时间.** What share of the trace's self time (all calls) is spent in
# GEMM operators, the operators whose name starts with `aten::` and ends with `mm`
# (`aten::mm`, `aten::addmm`, `aten::bmm`, `aten::baddbmm`)? `aten::linear` and
# `aten::matmul` are not among them: they call a GEMM operator, and their self time is
# only the call. Return a number between 0 and 1; 0.0 for a trace without self time.
# (1e-9 tolerance.)
#
# **Q5 · 时间花在哪里.** Split the trace's self time into three groups: **(a)** the GEMM
# operators of Q4; **(b)** attention, the operators whose name contains `attention`;
# **(c)** everything else (norms, element-wise operations, copies, views: many small
# calls). Which group holds the most self time? A tie goes to the earlier letter. Return
# `"a"`, `"b"` or `"c"`. (The answer says what to optimize first: the weights' bytes and
# the batch for (a), the attention kernel for (b), the number of operators for (c).)

# %% nbgrader={"grade": false, "grade_id": "questions_solution", "locked": false, "schema_version": 3, "solution": true}
def q1_h200_decode_bound():
    """Q1: tokens per second, a number."""
    ### BEGIN SOLUTION
    _, bytes_moved = step_cost(LLAMA_3_1_8B, 1, 1, 0, weight_bytes=2, kv_bytes=2)
    return H200["bytes_per_s"] / bytes_moved
    ### END SOLUTION


def q2_compute_bound_batch():
    """Q2: a whole number of tokens."""
    ### BEGIN SOLUTION
    ridge = H100_SXM["flops_per_s"] / H100_SXM["bytes_per_s"]
    batch = 1
    while (lambda fb: fb[0] / fb[1])(matmul_cost(batch, 4096, 14336)) < ridge:
        batch += 1
    return batch
    ### END SOLUTION


def q3_small_model_on_gpu():
    """Q3: "a", "b" or "c"."""
    ### BEGIN SOLUTION
    return "c"  # 20e6 / 3.35e12 = 6 us of memory time against >= 80 x 5 us = 400 us of launches
    ### END SOLUTION


def q4_gemm_share(trace):
    """Q4: trace is a list of (name, self_us) pairs; the share of self time in GEMM operators."""
    ### BEGIN SOLUTION
    total = sum(self_us for _, self_us in trace)
    gemm = sum(self_us for name, self_us in trace if name.startswith("aten::") and name.endswith("mm"))
    return gemm / total if total else 0.0
    ### END SOLUTION


def q5_where_time_goes(trace):
    """Q5: "a" (GEMMs), "b" (attention) or "c" (everything else), the group with the most
    self time in the trace."""
    ### BEGIN SOLUTION
    groups = {"a": 0.0, "b": 0.0, "c": 0.0}
    for name, self_us in trace:
        group = "a" if name.startswith("aten::") and name.endswith("mm") else "b" if "attention" in name else "c"
        groups[group] += self_us
    return max(groups, key=lambda letter: (groups[letter], -ord(letter)))  # ties: the earlier letter
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "questions", "locked": true, "points": 8, "schema_version": 3, "solution": false}
_trace = [("aten::linear", 3.0), ("aten::mm", 40.0), ("aten::softmax", 5.0), ("aten::add", 2.0)]
_answers = {"Q1": q1_h200_decode_bound(), "Q2": q2_compute_bound_batch(), "Q3": q3_small_model_on_gpu(),
            "Q4": q4_gemm_share(_trace), "Q5": q5_where_time_goes(_trace)}
assert isinstance(_answers["Q1"], (int, float)) and 10 < _answers["Q1"] < 10_000, "Q1: tokens per second"
assert isinstance(_answers["Q2"], int) and _answers["Q2"] > 0, "Q2: a whole, positive batch (an int)"
assert _answers["Q3"] in ("a", "b", "c"), 'Q3: return "a", "b" or "c"'
assert isinstance(_answers["Q4"], float) and 0 <= _answers["Q4"] <= 1, "Q4: a share, a float from 0 to 1"
assert _answers["Q5"] in ("a", "b", "c"), 'Q5: return "a", "b" or "c"'
print(", ".join(f"{_q} {_a if isinstance(_a, str) else format(_a, '.4g')}" for _q, _a in _answers.items()))
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch03_gpu_fundamentals/questions")
### END HIDDEN TESTS

# %% [markdown]
# Q4 and Q5 on the two decode traces of section 5, measured on this machine:

# %%
for _batch, _trace in decode_profiles.items():
    print(f"decode, batch {_batch:2d}, context 256: GEMM share {q4_gemm_share(_trace):.0%}, "
          f"most self time in group ({q5_where_time_goes(_trace)})")

# %% [markdown]
# ## Chapter summary · 本章小结
#
# - 推理服务的显存 = 权重 + KV缓存 + 激活值。权重与批大小无关；KV缓存随批大小和上下文长度线性增长，
#   GQA按查询头/KV头之比缩小它；卡上只有一部分显存可用。Llama-3.1-8B（BF16）在8k上下文时，
#   H200能放下的批大小约为H100的两倍。
# - 算术强度 = FLOPs / 字节。屋顶线时间 = max(FLOPs/峰值算力, 字节/带宽)；两者相等处是脊点
#   （H100 SXM的BF16约295 FLOP/字节，H200约206）。批大小为1的解码（GEMV）约1 FLOP/字节，
#   远低于脊点，是访存受限；长提示词的预填充是计算受限；解码注意力的强度不随批大小增长。
# - 实测时间远高于屋顶线时间，说明瓶颈既不是访存也不是算力，而是开销（Python、框架调度、
#   内核启动）：这时要减少调用次数（算子融合、CUDA Graph），而不是追求更快的算术。
# - 用本机实测的拷贝带宽和矩阵乘速率作天花板，报告实际达到的比例；计时要预热、同步设备、取中位数。
# - Triton内核按块编程：最后一个块要用掩码；归约要用float32累加；融合的RMSNorm和Softmax每行只读写一次显存
#   （Softmax要先减去行最大值，填充位置取−∞）。分块矩阵乘法每个程序计算输出的一个块，沿K按BLOCK_K循环，
#   三条边都要加掩码，用float32累加器；块越大，每字节的运算越多，其余的复用靠L2缓存。
# - 先剖析再优化：按算子自身时间（self time）排序，找出真正耗时的算子，并看时间主要落在矩阵乘、
#   注意力还是大量小算子上，再决定优化什么。
