"""A small Llama-family forward pass with pluggable attention and KV cache.

The course's engine, read top to bottom: embedding -> N x (RMSNorm, attention with RoPE
and grouped-query heads, residual, RMSNorm, SwiGLU MLP, residual) -> RMSNorm -> logits.
It runs on the weights of a loaded `transformers` model and reproduces it: logits within
1e-4 in float32, greedy tokens identical to `generate(do_sample=False)`.

Why it is fast on a tiny model. The course model (6 layers, d=256) is so small that a
decode step is bound by neither arithmetic nor attention but by two things: reading every
weight from memory (about 20 MB in float32 per token: the floor of a batch-1 step, as on
a GPU) and the fixed cost of each PyTorch call (microseconds on a CPU, a kernel launch on
a GPU), paid a few dozen times per layer. So the engine makes fewer, faster calls:

- q, k and v are one matmul over a stacked weight, gate and up another, and every weight
  is stored transposed, (in, out), the layout MKL streams fastest at batch 1 (copies
  made once, at load; the `LayerWeights` fields stay views of the model's tensors);
- RoPE's cos and sin are computed once per forward pass, and queries and keys are
  rotated together, with a flip instead of a negation and a concatenation;
- RMSNorm is one fused call (bit-identical in float32);
- the attention mask is built once per forward pass, not per layer, and dropped when
  every key is visible (a decode step without padding), which lets
  `scaled_dot_product_attention` take its unmasked kernel;
- `forward(..., logits_at=...)` runs the LM head only on the rows whose logits are used.

`CudaGraphDecoder` removes the per-call cost altogether on a GPU: one decode step is
recorded as a CUDA graph and replayed.

Three seams, used by chapter 5 and later:

- `Attention`: how queries attend to keys. Default: `causal_attention`, PyTorch's fused attention under a mask.
- `KVCache`: where past keys and values live. Default: none at all, so every decoding
  step recomputes the keys and values of the whole prefix. That is the baseline every
  cache must beat, and it is correct by construction. Chapter 5 implements contiguous and
  paged ones (a paged cache attends by itself through `PagedAttentionCache.attend`).
- `Linear`: how a block multiplies by a weight matrix. Default: a Tensor, multiplied in
  full precision. Any callable `f(x) -> x @ W.T` may stand in for it (chapter 7's
  quantized W4A16 layers); `LlamaWeights.map_linears(fn)` swaps every block linear at
  once, by name: `layers.<i>.qkv` (q, k, v rows stacked), `layers.<i>.o`,
  `layers.<i>.gate_up` (gate rows, then up rows), `layers.<i>.down`. The embedding and
  the LM head are not block linears and are never mapped.

Both speak in *positions*, not masks: each token carries its position in its sequence,
and a slot that holds no token (left padding, an unused cache slot) carries -1. The one
visibility rule, for every layout of the cache (contiguous, paged, shared prefix), is

    key j is visible to query i  <=>  0 <= position[j] <= position[i]
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Protocol, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

NO_TOKEN = -1  # the position of a slot that holds no token: padding, an empty cache slot

# A block linear as the engine stores it: a full-precision weight transposed to (in, out),
# or any callable computing x @ W.T for the (out, in) weight W it stands for (the seam).
Linear = Union[Tensor, Callable[[Tensor], Tensor]]


# ---------------------------------------------------------------------------------------
# The seams
# ---------------------------------------------------------------------------------------

class KVView(NamedTuple):
    """Everything one attention call may look at, as the cache hands it over."""
    keys: Tensor  # (B, n_kv_heads, T_all, head_dim)
    values: Tensor  # (B, n_kv_heads, T_all, head_dim)
    positions: Tensor  # (B, T_all) long, NO_TOKEN where a slot is empty


class KVCache(Protocol):
    """Past keys and values, per layer (chapter 5 implements them).

    A cache may also attend by itself: if it has a method
    `attend(layer, query, keys, values, positions) -> Tensor` (`PagedAttentionCache`), the
    engine hands it the new tokens' query, keys and values and takes attention's output
    from it instead of calling `update` and then `Engine.attention`. A paged cache uses
    this to write through its slot mapping and read through paged attention, never
    building a dense copy of the past.
    """

    def update(self, layer: int, keys: Tensor, values: Tensor, positions: Tensor) -> KVView:
        """Store the new tokens' keys and values and return all that attention may see.

        keys, values: (B, n_kv_heads, T_new, head_dim), already rotated by RoPE.
        positions: (B, T_new), NO_TOKEN for padding.
        Returns the layer's stored keys, values and positions *including* the new ones.
        """
        ...


class PagedAttentionCache(Protocol):
    def attend(self, layer: int, query: Tensor, keys: Tensor, values: Tensor,
               positions: Tensor) -> Tensor:
        """Store the new tokens' keys and values, then attend to everything stored.

        query: (B, n_heads, T_new, head_dim); keys, values: (B, n_kv_heads, T_new,
        head_dim), already rotated; positions: (B, T_new), NO_TOKEN for padding.
        Returns (B, n_heads, T_new, head_dim), as `Attention` does, under the same
        visibility rule.
        """
        ...


class Attention(Protocol):
    def __call__(self, query: Tensor, keys: Tensor, values: Tensor,
                 query_positions: Tensor, key_positions: Tensor) -> Tensor:
        """Scaled dot-product attention under the visibility rule (module docstring).

        query: (B, n_heads, T_q, head_dim); keys, values: (B, n_kv_heads, T_k, head_dim)
        with n_heads a multiple of n_kv_heads (query head h reads KV head
        h // (n_heads // n_kv_heads)); query_positions (B, T_q), key_positions (B, T_k).
        Returns (B, n_heads, T_q, head_dim) in the query's dtype.
        """
        ...


def causal_attention(query: Tensor, keys: Tensor, values: Tensor,
                     query_positions: Tensor, key_positions: Tensor) -> Tensor:
    """The reference `Attention`: PyTorch's fused attention under the visibility rule.

    (Chapter 5 has you write the same computation by hand; this one only builds the mask.)
    """
    visible = ((key_positions[:, None, :] >= 0)
               & (key_positions[:, None, :] <= query_positions[:, :, None]))  # (B, T_q, T_k)
    # A padding query that sees no key would get NaN (softmax over nothing), and NaN leaks
    # through 0 * NaN later on: let it see every key instead; its output is never used.
    visible = visible | ~visible.any(dim=-1, keepdim=True)
    return F.scaled_dot_product_attention(query, keys, values, attn_mask=visible[:, None],
                                          enable_gqa=True)  # (B, H, T_q, D)


# ---------------------------------------------------------------------------------------
# The weights, taken from a transformers model
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerWeights:
    attention_norm: Tensor  # (D,)
    q_proj: Tensor  # (n_heads * head_dim, D)
    k_proj: Tensor  # (n_kv_heads * head_dim, D)
    v_proj: Tensor  # (n_kv_heads * head_dim, D)
    o_proj: Tensor  # (D, n_heads * head_dim)
    mlp_norm: Tensor  # (D,)
    gate_proj: Tensor  # (I, D)
    up_proj: Tensor  # (I, D)
    down_proj: Tensor  # (D, I)
    q_bias: Tensor | None = None  # Qwen2-style checkpoints have q/k/v biases; Llama has none
    k_bias: Tensor | None = None
    v_bias: Tensor | None = None
    # Copies made once, here, for speed (the fields above stay views of the model's tensors):
    # - stacked: one matmul computes q, k and v (one computes gate and up) where the model
    #   makes three (two); each output element is the same dot product, two calls fewer;
    # - transposed to (in, out), so a step computes x @ w_t: at batch 1 MKL streams that
    #   layout ~1.3x faster than F.linear's x @ w.T (measured on the course machine; the
    #   weights, 20 MB per step, are what a decode step waits for, as on a GPU).
    # Each may instead be a callable x -> x @ W.T (the linear seam: `LlamaWeights.map_linears`).
    qkv_t: Linear = field(init=False)  # (D, q | k | v outputs)
    qkv_bias: Tensor | None = field(init=False)
    o_t: Linear = field(init=False)  # (n_heads * head_dim, D)
    gate_up_t: Linear = field(init=False)  # (D, 2I): gate outputs, then up outputs
    down_t: Linear = field(init=False)  # (I, D)

    def __post_init__(self):
        biases = (self.q_bias, self.k_bias, self.v_bias)
        if any(b is None for b in biases) and any(b is not None for b in biases):
            raise ValueError("q, k and v must all have a bias or none")
        transposed = lambda *ws: torch.cat(ws).t().contiguous()  # noqa: E731
        object.__setattr__(self, "qkv_t", transposed(self.q_proj, self.k_proj, self.v_proj))
        object.__setattr__(self, "qkv_bias", None if self.q_bias is None else torch.cat(biases))
        object.__setattr__(self, "o_t", transposed(self.o_proj))
        object.__setattr__(self, "gate_up_t", transposed(self.gate_proj, self.up_proj))
        object.__setattr__(self, "down_t", transposed(self.down_proj))


@dataclass(frozen=True)
class LlamaWeights:
    n_heads: int
    n_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    embed_tokens: Tensor  # (V, D)
    layers: tuple[LayerWeights, ...]
    final_norm: Tensor  # (D,)
    lm_head: Tensor  # (V, D); the same tensor as embed_tokens when they are tied
    # RoPE rotates dimension pair i of a head by angle position * inv_freq[i]; for plain
    # Llama inv_freq[i] = rope_theta ** (-2i / head_dim). Taken from the model, so the
    # rescaled variants (Llama 3's "llama3" rope type, ...) come for free.
    rope_inv_freq: Tensor  # (head_dim // 2,)
    rope_scale: float  # multiplies cos and sin; 1.0 except for some rope types
    lm_head_t: Tensor = field(init=False)  # (D, V), transposed once (see LayerWeights)

    def __post_init__(self):
        object.__setattr__(self, "lm_head_t", self.lm_head.t().contiguous())

    def map_linears(self, fn: Callable[[str, Tensor], Linear | Tensor]) -> "LlamaWeights":
        """New weights whose block linears are `fn(name, weight)`; these stay untouched.

        For each layer i and each name in `layers.<i>.qkv`, `.o`, `.gate_up`, `.down`,
        `fn` gets the (out, in) weight the engine multiplies by (a fresh copy: changing it
        changes nothing here) and returns either a Tensor of the same shape (used in full
        precision) or a callable x (..., in) -> x @ W.T (..., out) in x's dtype, e.g. a
        quantized layer. Returning the weight unchanged gives bit-identical outputs.
        Norms, biases, the embedding and the LM head are shared, not copied; the
        `q_proj`... fields of a mapped layer still hold the original full-precision views
        (the engine reads only the stacked linears), so count a mapped model's bytes
        from what `fn` returned.
        """
        layers = []
        for index, layer in enumerate(self.layers):
            mapped = {}
            for name, attribute in LINEAR_NAMES:
                current = getattr(layer, attribute)
                if not isinstance(current, Tensor):
                    raise TypeError(f"layers.{index}.{name} is already mapped ({current!r}); "
                                    f"map the full-precision weights")
                weight = current.t().contiguous()  # (out, in), a copy
                result = fn(f"layers.{index}.{name}", weight)
                if isinstance(result, Tensor):
                    if result.shape != weight.shape:
                        raise ValueError(f"fn returned shape {tuple(result.shape)} for "
                                         f"layers.{index}.{name}, expected {tuple(weight.shape)}")
                    result = result.t().contiguous()  # (in, out), as the engine stores it
                elif not callable(result):
                    raise TypeError(f"fn must return a Tensor or a callable for "
                                    f"layers.{index}.{name}, got {type(result).__name__}")
                mapped[attribute] = result
            new_layer = copy.copy(layer)  # shares every tensor; frozen, so set by hand:
            for attribute, linear in mapped.items():
                object.__setattr__(new_layer, attribute, linear)
            layers.append(new_layer)
        weights = copy.copy(self)
        object.__setattr__(weights, "layers", tuple(layers))
        return weights

    def with_silent_layers(self, extra: int) -> "LlamaWeights":
        """The same model, `1 + extra` times as deep and as slow, with the same logits.

        After each layer come `extra` copies of it whose output projections (o and down)
        are zero: they compute attention and the MLP in full, then add exactly 0 to the
        residual stream, so the logits are bit-identical while a forward pass does
        `1 + extra` times the work. Chapter 8 uses it as a target whose perfect draft
        model (the original) costs a known fraction of a target step. A KV cache for it
        needs `len(weights.layers)` layers.
        """
        if extra < 0:
            raise ValueError(f"extra must be >= 0, got {extra}")
        silent = lambda layer: dataclasses.replace(  # noqa: E731
            layer, o_proj=torch.zeros_like(layer.o_proj), down_proj=torch.zeros_like(layer.down_proj))
        return self.with_layers(tuple(x for layer in self.layers for x in (layer,) + (silent(layer),) * extra))

    def with_layers(self, layers: Sequence[LayerWeights]) -> "LlamaWeights":
        """Other decoder layers between this model's embedding and its final norm and LM
        head (shared, not copied), with its RoPE. Chapter 8's EAGLE head is one trained
        layer inside the target's frozen embedding and LM head."""
        weights = copy.copy(self)
        object.__setattr__(weights, "layers", tuple(layers))
        return weights

    @classmethod
    def random(cls, *, n_layers: int, hidden: int, n_heads: int, n_kv_heads: int,
               head_dim: int, intermediate: int, vocab: int, rope_theta: float = 500_000.0,
               dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cuda",
               seed: int = 0) -> "LlamaWeights":
        """Random weights of a given shape (normal, std 0.02; norms 1), for timing a model
        whose checkpoint is not here: a step's time depends on the shapes, not the values.
        E.g. Llama-3.1-8B: n_layers=32, hidden=4096, n_heads=32, n_kv_heads=8,
        head_dim=128, intermediate=14336, vocab=128256."""
        generator = torch.Generator(device=device).manual_seed(seed)

        def normal(*shape):
            return (torch.randn(shape, generator=generator, device=device) * 0.02).to(dtype)

        ones = torch.ones(hidden, dtype=dtype, device=device)
        layers = tuple(LayerWeights(
            attention_norm=ones, q_proj=normal(n_heads * head_dim, hidden),
            k_proj=normal(n_kv_heads * head_dim, hidden), v_proj=normal(n_kv_heads * head_dim, hidden),
            o_proj=normal(hidden, n_heads * head_dim), mlp_norm=ones,
            gate_proj=normal(intermediate, hidden), up_proj=normal(intermediate, hidden),
            down_proj=normal(hidden, intermediate)) for _ in range(n_layers))
        inv_freq = rope_theta ** (-torch.arange(0, head_dim, 2, device=device).float() / head_dim)
        embed = normal(vocab, hidden)
        return cls(n_heads=n_heads, n_kv_heads=n_kv_heads, head_dim=head_dim, rms_norm_eps=1e-5,
                   embed_tokens=embed, layers=layers, final_norm=ones, lm_head=embed,
                   rope_inv_freq=inv_freq, rope_scale=1.0)

    @classmethod
    def from_checkpoint(cls, name: str = "course-lm") -> "LlamaWeights":
        """A course model's weights read straight from its folder (config.json and
        model.safetensors), without `transformers`: the same tensors as
        `from_model(load_model(name))` for a plain Llama checkpoint, in a fraction of the
        start-up time (importing transformers' Llama costs seconds of CPU, which every
        grading worker would pay). Other architectures: use `from_model`."""
        import json
        from pathlib import Path

        from safetensors.torch import load_file

        import course_config

        folder = Path(course_config.MODELS.get(name, name))
        config = json.loads((folder / "config.json").read_text())
        rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
        if (config.get("model_type") != "llama" or rope.get("rope_type", "default") != "default"
                or config.get("attention_bias") or config.get("mlp_bias")):
            raise NotImplementedError(f"{name}: only plain Llama checkpoints load without "
                                      f"transformers; use from_model(load_model(name))")
        tensors = load_file(str(folder / "model.safetensors"))
        prefix = "model.layers.{}."
        layers = tuple(
            LayerWeights(**{field_name: tensors[prefix.format(i) + key] for field_name, key in (
                ("attention_norm", "input_layernorm.weight"),
                ("q_proj", "self_attn.q_proj.weight"), ("k_proj", "self_attn.k_proj.weight"),
                ("v_proj", "self_attn.v_proj.weight"), ("o_proj", "self_attn.o_proj.weight"),
                ("mlp_norm", "post_attention_layernorm.weight"),
                ("gate_proj", "mlp.gate_proj.weight"), ("up_proj", "mlp.up_proj.weight"),
                ("down_proj", "mlp.down_proj.weight"))})
            for i in range(config["num_hidden_layers"]))
        head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
        theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
        # as transformers computes the default RoPE frequencies, bit for bit
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        embed = tensors["model.embed_tokens.weight"]
        return cls(n_heads=config["num_attention_heads"], n_kv_heads=config["num_key_value_heads"],
                   head_dim=head_dim, rms_norm_eps=config["rms_norm_eps"], embed_tokens=embed,
                   layers=layers, final_norm=tensors["model.norm.weight"],
                   lm_head=embed if config.get("tie_word_embeddings") else tensors["lm_head.weight"],
                   rope_inv_freq=inv_freq, rope_scale=1.0)

    @classmethod
    def from_model(cls, model) -> "LlamaWeights":
        """The model's tensors as views (no copy), plus the stacked copies of LayerWeights."""
        config = model.config
        if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
            raise NotImplementedError("sliding-window attention is not part of the course engine")
        if any(hasattr(layer.self_attn, "q_norm") for layer in model.model.layers):
            raise NotImplementedError("per-head q/k norms (Qwen3) are not part of the engine")
        bias = lambda linear: None if linear.bias is None else linear.bias.detach()  # noqa: E731
        layers = tuple(
            LayerWeights(
                attention_norm=layer.input_layernorm.weight.detach(),
                q_proj=layer.self_attn.q_proj.weight.detach(),
                k_proj=layer.self_attn.k_proj.weight.detach(),
                v_proj=layer.self_attn.v_proj.weight.detach(),
                o_proj=layer.self_attn.o_proj.weight.detach(),
                mlp_norm=layer.post_attention_layernorm.weight.detach(),
                gate_proj=layer.mlp.gate_proj.weight.detach(),
                up_proj=layer.mlp.up_proj.weight.detach(),
                down_proj=layer.mlp.down_proj.weight.detach(),
                q_bias=bias(layer.self_attn.q_proj), k_bias=bias(layer.self_attn.k_proj),
                v_bias=bias(layer.self_attn.v_proj))
            for layer in model.model.layers)
        rotary = model.model.rotary_emb
        head_dim = (getattr(config, "head_dim", None)
                    or config.hidden_size // config.num_attention_heads)
        return cls(n_heads=config.num_attention_heads,
                   n_kv_heads=config.num_key_value_heads, head_dim=head_dim,
                   rms_norm_eps=config.rms_norm_eps,
                   embed_tokens=model.model.embed_tokens.weight.detach(), layers=layers,
                   final_norm=model.model.norm.weight.detach(),
                   lm_head=model.lm_head.weight.detach(),
                   rope_inv_freq=rotary.inv_freq.detach(),
                   rope_scale=float(getattr(rotary, "attention_scaling", 1.0)))


# ---------------------------------------------------------------------------------------
# The building blocks
# ---------------------------------------------------------------------------------------

def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """x / rms(x) * weight, computed in float32 whatever the working dtype (as Llama does)."""
    if x.dtype == torch.float32:  # one fused call; bit-identical to the three steps below
        return F.rms_norm(x, weight.shape, weight, eps)
    return weight * F.rms_norm(x.float(), weight.shape, eps=eps).to(x.dtype)


def rope_cos_sin(positions: Tensor, inv_freq: Tensor, scale: float,
                 dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """cos and sin of every token's rotation angles: (B, T, head_dim) each.

    Padding (NO_TOKEN) is rotated as position 0; nothing ever attends to it.
    """
    angles = positions.clamp(min=0).float()[..., None] * inv_freq.float()  # (B, T, head_dim/2)
    angles = torch.cat([angles, angles], dim=-1)  # (B, T, head_dim): halves, not interleaved
    return (angles.cos() * scale).to(dtype), (angles.sin() * scale).to(dtype)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate each (x[i], x[i + head_dim/2]) pair by its angle. x: (B, heads, T, head_dim)."""
    first, second = x.chunk(2, dim=-1)
    rotated_half = torch.cat([-second, first], dim=-1)  # (B, heads, T, head_dim)
    return x * cos[:, None] + rotated_half * sin[:, None]


def rope_tables(positions: Tensor, inv_freq: Tensor, scale: float,
                dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """What `rotate` needs, once per forward pass: cos and a signed sin, (B, T, 1, head_dim).

    `apply_rope` builds rotate_half(x) = (-x2, x1) with a negation and a concatenation;
    flipping the two halves gives (x2, x1) in one call, and the minus sign moves into the
    table: sin_signed = (-sin, sin). Multiplying by -s or negating first is the same float.
    """
    cos, sin = rope_cos_sin(positions, inv_freq, scale, dtype)  # (B, T, head_dim) each
    half = sin.shape[-1] // 2
    sin_signed = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)
    return cos[:, :, None], sin_signed[:, :, None]


def rotate(x: Tensor, cos: Tensor, sin_signed: Tensor) -> Tensor:
    """RoPE on x (B, T, heads, head_dim) with `rope_tables`; equals `apply_rope` exactly."""
    B, T, heads, head_dim = x.shape
    swapped = x.view(B, T, heads, 2, head_dim // 2).flip(3).view(B, T, heads, head_dim)
    return x * cos + swapped * sin_signed


# The block linears, by the name `LlamaWeights.map_linears` gives them, and their field.
LINEAR_NAMES = (("qkv", "qkv_t"), ("o", "o_t"), ("gate_up", "gate_up_t"), ("down", "down_t"))


def project(x: Tensor, linear: Linear) -> Tensor:
    """x @ W.T for a block linear: a stored (in, out) Tensor, or a callable (the seam)."""
    return x @ linear if isinstance(linear, Tensor) else linear(x)


def swiglu_mlp(x: Tensor, layer: LayerWeights) -> Tensor:
    gate, up = project(x, layer.gate_up_t).chunk(2, dim=-1)  # (B, T, I) each
    return project(F.silu(gate) * up, layer.down_t)  # (B, T, D)


class Visibility:
    """The attention mask of one forward pass, built once and shared by the layers.

    Every layer of a cache holds the same key positions, so the mask built for layer 0
    serves them all; a layer whose key positions differ gets its own. When every key is
    visible to every query (a decode step without padding) the mask is dropped, and
    `scaled_dot_product_attention` runs its unmasked kernel, a third of the masked one's
    time at this size. Deciding that reads a value back (`allow_sync`); a captured CUDA
    graph cannot, so `CudaGraphDecoder` keeps the mask.
    """

    def __init__(self, query_positions: Tensor, allow_sync: bool = True):
        self.query_positions = query_positions  # (B, T_q)
        self.allow_sync = allow_sync
        self.key_positions: Tensor | None = None
        self.mask: Tensor | None = None  # (B, 1, T_q, T_k) bool, or None: all visible

    def mask_for(self, key_positions: Tensor) -> Tensor | None:
        known = self.key_positions
        if known is not None and (known is key_positions or (
                self.allow_sync and known.shape == key_positions.shape
                and torch.equal(known, key_positions))):
            return self.mask
        visible = ((key_positions[:, None, :] >= 0)
                   & (key_positions[:, None, :] <= self.query_positions[:, :, None]))  # (B, T_q, T_k)
        # A padding query that sees no key would get NaN (softmax over nothing): let it
        # see every key instead, as `causal_attention` does; its output is never used.
        visible = visible | ~visible.any(dim=-1, keepdim=True)
        self.key_positions = key_positions
        self.mask = None if self.allow_sync and bool(visible.all()) else visible[:, None]
        return self.mask


# ---------------------------------------------------------------------------------------
# The model and greedy decoding
# ---------------------------------------------------------------------------------------

class Engine:
    """Forward pass and greedy decoding over `LlamaWeights`.

        engine = Engine.from_model(llmopt.load_model("course-lm"))
        logits = engine.forward(input_ids, positions)  # (B, T, V)
        tokens = engine.generate(input_ids, attention_mask, max_new_tokens=32)
    """

    def __init__(self, weights: LlamaWeights, attention: Attention = causal_attention,
                 eos_token_id: int | None = None, pad_token_id: int | None = None):
        self.weights = weights
        self.attention = attention
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id if pad_token_id is not None else eos_token_id

    @classmethod
    def from_model(cls, model, attention: Attention = causal_attention) -> "Engine":
        generation = getattr(model, "generation_config", None) or model.config
        eos = generation.eos_token_id
        eos = eos[0] if isinstance(eos, (list, tuple)) else eos  # several EOS ids: use the first
        return cls(LlamaWeights.from_model(model), attention, eos_token_id=eos,
                   pad_token_id=generation.pad_token_id)

    @classmethod
    def from_checkpoint(cls, name: str = "course-lm", attention: Attention = causal_attention) -> "Engine":
        """`from_model(load_model(name))` without `transformers`, for a plain Llama
        checkpoint such as the course models (see `LlamaWeights.from_checkpoint`)."""
        import json
        from pathlib import Path

        import course_config

        folder = Path(course_config.MODELS.get(name, name))
        settings = json.loads((folder / "config.json").read_text())
        if (folder / "generation_config.json").is_file():
            settings.update(json.loads((folder / "generation_config.json").read_text()))
        eos = settings.get("eos_token_id")
        eos = eos[0] if isinstance(eos, (list, tuple)) else eos
        return cls(LlamaWeights.from_checkpoint(name), attention, eos_token_id=eos,
                   pad_token_id=settings.get("pad_token_id"))

    def attention_block(self, layer_index: int, x: Tensor, rope: tuple[Tensor, Tensor],
                        positions: Tensor, kv_cache: KVCache | None,
                        visibility: Visibility) -> Tensor:
        w, layer = self.weights, self.weights.layers[layer_index]
        B, T, _ = x.shape
        H, H_kv, hd = w.n_heads, w.n_kv_heads, w.head_dim
        qkv = project(x, layer.qkv_t)  # (B, T, (H + 2 H_kv) hd)
        if layer.qkv_bias is not None:
            qkv = qkv + layer.qkv_bias
        qkv = qkv.view(B, T, H + 2 * H_kv, hd)
        query_keys = rotate(qkv[:, :, :H + H_kv], *rope)  # queries and keys rotated at once
        query = query_keys[:, :, :H].transpose(1, 2)  # (B, H, T, hd)
        keys = query_keys[:, :, H:].transpose(1, 2)  # (B, H_kv, T, hd)
        values = qkv[:, :, H + H_kv:].transpose(1, 2)  # (B, H_kv, T, hd)
        attend = getattr(kv_cache, "attend", None)
        if attend is not None:  # the cache attends by itself (a paged cache)
            out = attend(layer_index, query, keys, values, positions)  # (B, H, T, hd)
        else:
            if kv_cache is None:  # no cache: these T tokens are all there is to attend to
                visible = KVView(keys, values, positions)
            else:
                visible = kv_cache.update(layer_index, keys, values, positions)
            if self.attention is causal_attention:  # the default: the pass's shared mask
                out = F.scaled_dot_product_attention(
                    query, visible.keys, visible.values,
                    attn_mask=visibility.mask_for(visible.positions), enable_gqa=True)
            else:
                out = self.attention(query, visible.keys, visible.values, positions,
                                     visible.positions)  # (B, H, T, hd)
        return project(out.transpose(1, 2).reshape(B, T, H * hd), layer.o_t)  # (B, T, D)

    def forward(self, input_ids: Tensor | None, positions: Tensor,
                kv_cache: KVCache | None = None, *, logits_at: Tensor | None = None,
                visibility: Visibility | None = None, inputs_embeds: Tensor | None = None,
                hidden_at: Sequence[int] = ()) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Logits (B, T, V) of tokens input_ids (B, T) at positions (B, T).

        Without a cache, the tokens attend only to each other, so input_ids must hold
        the whole prefix. With a cache, they also attend to what the cache already holds.
        `logits_at` (N,) long: only the logits of those token indices, (B, N, V). A
        prefill needs one row of logits, not T: the LM head (V x D, as big as a layer's
        matmuls for the course model) then runs on N tokens instead of T.

        The two seams of chapter 8's EAGLE head: `inputs_embeds` (B, T, D) enters the
        first layer instead of the embeddings of input_ids (then None); `hidden_at`,
        layer indices (negative from the end), also returns the residual stream after
        each of those layers, (B, T, D) for every token whatever `logits_at` says: the
        result is then (logits, [hidden, ...]). The target's "features" are
        `hidden_at=(-1,)`, the state that the final norm and the LM head turn into logits.
        """
        w = self.weights
        x = w.embed_tokens[input_ids] if inputs_embeds is None else inputs_embeds  # (B, T, D)
        keep = {index % len(w.layers) for index in hidden_at}
        hidden = {}
        rope = rope_tables(positions, w.rope_inv_freq, w.rope_scale, x.dtype)
        visibility = visibility or Visibility(positions)
        for layer_index, layer in enumerate(w.layers):
            normed = rms_norm(x, layer.attention_norm, w.rms_norm_eps)  # (B, T, D)
            x = x + self.attention_block(layer_index, normed, rope, positions, kv_cache,
                                         visibility)
            normed = rms_norm(x, layer.mlp_norm, w.rms_norm_eps)  # (B, T, D)
            x = x + swiglu_mlp(normed, layer)
            if layer_index in keep:
                hidden[layer_index] = x
        if logits_at is not None:
            x = x[:, logits_at]  # (B, N, D)
        x = rms_norm(x, w.final_norm, w.rms_norm_eps)
        logits = x @ w.lm_head_t  # (B, T or N, V)
        if hidden_at:
            return logits, [hidden[index % len(w.layers)] for index in hidden_at]
        return logits

    @torch.inference_mode()
    def generate(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                 max_new_tokens: int = 32, kv_cache: KVCache | None = None) -> Tensor:
        """Greedy decoding; returns prompt + new tokens, (B, T + n) with n <= max_new_tokens.

        Prompts are left-padded (attention_mask 0 on the padding). A sequence that emitted
        EOS is continued with padding, and decoding stops when all have, as in
        `transformers`' `generate(do_sample=False)`.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        B, T = input_ids.shape
        prompt_positions = attention_mask.long().cumsum(-1) - 1  # (B, T)
        prompt_positions = prompt_positions.masked_fill(attention_mask == 0, NO_TOKEN)
        # Written in place, column by column: no step copies the whole history.
        tokens = input_ids.new_zeros(B, T + max_new_tokens)
        positions = prompt_positions.new_zeros(B, T + max_new_tokens)
        tokens[:, :T], positions[:, :T] = input_ids, prompt_positions
        finished = torch.zeros(B, dtype=torch.bool, device=input_ids.device)  # (B,)
        last = torch.tensor([-1], device=input_ids.device)  # only the last column's logits
        length = T
        for _ in range(max_new_tokens):
            if kv_cache is None:  # recompute the whole prefix at every step
                logits = self.forward(tokens[:, :length], positions[:, :length],
                                      logits_at=last)
            elif length == T:  # prefill: the whole prompt
                logits = self.forward(input_ids, prompt_positions, kv_cache, logits_at=last)
            else:  # only the new token; the cache remembers the rest
                logits = self.forward(tokens[:, length - 1:length],
                                      positions[:, length - 1:length], kv_cache)
            next_token = logits[:, -1].argmax(dim=-1)  # (B,)
            if self.eos_token_id is not None:
                next_token = next_token.masked_fill(finished, self.pad_token_id)
                finished |= next_token == self.eos_token_id
            tokens[:, length] = next_token
            positions[:, length] = positions[:, length - 1] + 1  # left padding: last is real
            length += 1
            if finished.all():
                break
        return tokens[:, :length].clone()


# ---------------------------------------------------------------------------------------
# CUDA graphs: one decode step, recorded once, replayed
# ---------------------------------------------------------------------------------------

class CudaGraphDecoder:
    """Greedy decoding whose decode step is one CUDA graph replay.

        decoder = CudaGraphDecoder(engine, cache)  # captures once
        tokens = decoder.generate(input_ids, attention_mask, max_new_tokens=64)

    `cache` is a `KVCache` built for the graph: its tensors never move and never change
    shape, its `update` reads nothing back to the host (no `.item()`, no `nonzero`, no
    slicing to a length known only on the device) and hides unwritten slots with
    NO_TOKEN positions; it has `batch_size`, `max_len` and `reset()`. Chapter 5's
    contiguous cache, rewritten under those rules, is one (the course ships none in
    `llmopt`: it would be that exercise's answer).


    A decode step of a small model (or of a big one at small batch) is a few hundred tiny
    kernels, and launching them from Python costs more than running them. A CUDA graph
    records the launches of one step once; a replay sends them all in one call. What a
    graph cannot do: change a tensor's address or shape, or read a value back to the host
    in the middle. So the step reads its inputs from fixed tensors (`input_ids`,
    `positions`), writes into the cache of fixed size, and keeps the attention
    mask (deciding to drop it would read a value back). The prefill, whose length varies,
    runs eagerly into the same cache. `generate(..., graph=False)` runs the very same step
    eagerly: the tokens must be identical, and the time per token is the difference.

    On a CPU there is nothing to capture: construction refuses, unless capture=False,
    which gives the eager path alone (the tests use it to check the static cache).
    """

    def __init__(self, engine: Engine, cache: KVCache, capture: bool = True):
        device = engine.weights.embed_tokens.device
        if capture and device.type != "cuda":
            raise RuntimeError(
                f"CudaGraphDecoder records GPU kernel launches, and the engine's weights are on "
                f"{device}: move the model to a CUDA device, or pass capture=False for the eager "
                f"path (Engine.generate, or chapter 5's cache, decode on a CPU)")
        batch_size = cache.batch_size
        self.engine, self.batch_size, self.cache = engine, batch_size, cache
        self.input_ids = torch.zeros(batch_size, 1, dtype=torch.long, device=device)  # (B, 1)
        self.positions = torch.zeros(batch_size, 1, dtype=torch.long, device=device)  # (B, 1)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: Tensor | None = None  # (B, V): the graph's output, rewritten by replay
        if capture:
            self.capture()

    @torch.inference_mode()
    def eager_step(self) -> Tensor:
        """One decode step from `input_ids` at `positions`: next-token logits (B, V)."""
        visibility = Visibility(self.positions, allow_sync=False)
        return self.engine.forward(self.input_ids, self.positions, self.cache,
                                   visibility=visibility)[:, -1]

    def capture(self) -> None:
        """Record one decode step. Warm up first on a side stream (so that lazy
        initialisations are not recorded); then forget what the warm-up wrote."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self.eager_step()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.logits = self.eager_step()
        self.cache.reset()

    def step(self, token_ids: Tensor, positions: Tensor, graph: bool = True) -> Tensor:
        """Logits (B, V) of token_ids (B, 1) at positions (B, 1), the cache holding the past."""
        self.input_ids.copy_(token_ids)
        self.positions.copy_(positions)
        if graph:
            if self.graph is None:
                raise RuntimeError("no graph captured (capture=False): call step(..., graph=False)")
            self.graph.replay()
            return self.logits
        return self.eager_step()

    @torch.inference_mode()
    def generate(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                 max_new_tokens: int = 32, graph: bool = True) -> Tensor:
        """As `Engine.generate` with a cache: (B, T + n), the prompt and n new tokens."""
        B, T = input_ids.shape
        if B != self.batch_size or T + max_new_tokens > self.cache.max_len:
            raise ValueError(f"this decoder serves batches of {self.batch_size} rows of at most "
                             f"{self.cache.max_len} tokens; got {B} x ({T} + {max_new_tokens})")
        engine = self.engine
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, NO_TOKEN)
        self.cache.reset()
        tokens = input_ids.new_zeros(B, T + max_new_tokens)
        tokens[:, :T] = input_ids
        logits = engine.forward(input_ids, positions, self.cache,
                                logits_at=torch.tensor([-1], device=input_ids.device))[:, -1]
        last_position = positions[:, -1:]  # (B, 1): left padding, the last column is real
        finished = torch.zeros(B, dtype=torch.bool, device=input_ids.device)
        length = T
        for i in range(max_new_tokens):
            if i > 0:
                last_position = last_position + 1
                logits = self.step(tokens[:, length - 1:length], last_position, graph)
            next_token = logits.argmax(dim=-1)  # (B,)
            if engine.eos_token_id is not None:
                next_token = next_token.masked_fill(finished, engine.pad_token_id)
                finished |= next_token == engine.eos_token_id
            tokens[:, length] = next_token
            length += 1
            if engine.eos_token_id is not None and finished.all():  # reads back: only with EOS
                break
        return tokens[:, :length].clone()
