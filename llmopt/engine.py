"""A small Llama-family forward pass with pluggable attention and KV cache.

The course's engine, read top to bottom: embedding -> N x (RMSNorm, attention with RoPE
and grouped-query heads, residual, RMSNorm, SwiGLU MLP, residual) -> RMSNorm -> logits.
It runs on the weights of a loaded `transformers` model (no copy) and reproduces it:
logits within 1e-4 in float32, greedy tokens identical to `generate(do_sample=False)`.

Two seams, used by chapter 5 and later:

- `Attention`: how queries attend to keys. Default: `causal_attention`, PyTorch's fused attention under a mask.
- `KVCache`: where past keys and values live. Default: none at all, so every decoding
  step recomputes the keys and values of the whole prefix. That is the baseline every
  cache must beat, and it is correct by construction.

Both speak in *positions*, not masks: each token carries its position in its sequence,
and a slot that holds no token (left padding, an unused cache slot) carries -1. The one
visibility rule, for every layout of the cache (contiguous, paged, shared prefix), is

    key j is visible to query i  <=>  0 <= position[j] <= position[i]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

NO_TOKEN = -1  # the position of a slot that holds no token: padding, an empty cache slot


# ---------------------------------------------------------------------------------------
# The seams
# ---------------------------------------------------------------------------------------

class KVView(NamedTuple):
    """Everything one attention call may look at, as the cache hands it over."""
    keys: Tensor  # (B, n_kv_heads, T_all, head_dim)
    values: Tensor  # (B, n_kv_heads, T_all, head_dim)
    positions: Tensor  # (B, T_all) long, NO_TOKEN where a slot is empty


class KVCache(Protocol):
    """Past keys and values, per layer. Chapter 5 implements contiguous and paged ones.

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

    @classmethod
    def from_model(cls, model) -> "LlamaWeights":
        """Views of a Llama- or Qwen2-family model's tensors (no copy)."""
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
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


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


def swiglu_mlp(x: Tensor, layer: LayerWeights) -> Tensor:
    return F.linear(F.silu(F.linear(x, layer.gate_proj)) * F.linear(x, layer.up_proj),
                    layer.down_proj)  # (B, T, D)


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

    def attention_block(self, layer_index: int, x: Tensor, cos: Tensor, sin: Tensor,
                        positions: Tensor, kv_cache: KVCache | None) -> Tensor:
        w, layer = self.weights, self.weights.layers[layer_index]
        B, T, _ = x.shape
        query = F.linear(x, layer.q_proj, layer.q_bias).view(B, T, w.n_heads, w.head_dim)
        keys = F.linear(x, layer.k_proj, layer.k_bias).view(B, T, w.n_kv_heads, w.head_dim)
        values = F.linear(x, layer.v_proj, layer.v_bias).view(B, T, w.n_kv_heads, w.head_dim)
        query = apply_rope(query.transpose(1, 2), cos, sin)  # (B, H, T, hd)
        keys = apply_rope(keys.transpose(1, 2), cos, sin)  # (B, H_kv, T, hd)
        values = values.transpose(1, 2)  # (B, H_kv, T, hd)
        attend = getattr(kv_cache, "attend", None)
        if attend is not None:  # the cache attends by itself (a paged cache)
            out = attend(layer_index, query, keys, values, positions)  # (B, H, T, hd)
        else:
            if kv_cache is None:  # no cache: these T tokens are all there is to attend to
                visible = KVView(keys, values, positions)
            else:
                visible = kv_cache.update(layer_index, keys, values, positions)
            out = self.attention(query, visible.keys, visible.values, positions,
                                 visible.positions)  # (B, H, T, hd)
        return F.linear(out.transpose(1, 2).reshape(B, T, w.n_heads * w.head_dim),
                        layer.o_proj)  # (B, T, D)

    def forward(self, input_ids: Tensor, positions: Tensor,
                kv_cache: KVCache | None = None) -> Tensor:
        """Logits (B, T, V) of tokens input_ids (B, T) at positions (B, T).

        Without a cache, the tokens attend only to each other, so input_ids must hold
        the whole prefix. With a cache, they also attend to what the cache already holds.
        """
        w = self.weights
        x = w.embed_tokens[input_ids]  # (B, T, D)
        cos, sin = rope_cos_sin(positions, w.rope_inv_freq, w.rope_scale, x.dtype)
        for layer_index, layer in enumerate(w.layers):
            normed = rms_norm(x, layer.attention_norm, w.rms_norm_eps)  # (B, T, D)
            x = x + self.attention_block(layer_index, normed, cos, sin, positions, kv_cache)
            normed = rms_norm(x, layer.mlp_norm, w.rms_norm_eps)  # (B, T, D)
            x = x + swiglu_mlp(normed, layer)
        x = rms_norm(x, w.final_norm, w.rms_norm_eps)
        return F.linear(x, w.lm_head)  # (B, T, V)

    @torch.no_grad()
    def generate(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                 max_new_tokens: int = 32, kv_cache: KVCache | None = None) -> Tensor:
        """Greedy decoding; returns prompt + new tokens, (B, T + n) with n <= max_new_tokens.

        Prompts are left-padded (attention_mask 0 on the padding). A sequence that emitted
        EOS is continued with padding, and decoding stops when all have, as in
        `transformers`' `generate(do_sample=False)`.
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        positions = attention_mask.long().cumsum(-1) - 1  # (B, T)
        positions = positions.masked_fill(attention_mask == 0, NO_TOKEN)
        tokens = input_ids
        new_ids, new_positions = tokens, positions  # the first step is the whole prompt
        finished = torch.zeros(len(tokens), dtype=torch.bool, device=tokens.device)  # (B,)
        for _ in range(max_new_tokens):
            if kv_cache is None:  # recompute the whole prefix at every step
                logits = self.forward(tokens, positions)  # (B, T_so_far, V)
            else:  # only the new tokens; the cache remembers the rest
                logits = self.forward(new_ids, new_positions, kv_cache)  # (B, T_new, V)
            next_token = logits[:, -1].argmax(dim=-1)  # (B,)
            if self.eos_token_id is not None:
                next_token = next_token.masked_fill(finished, self.pad_token_id)
                finished |= next_token == self.eos_token_id
            new_ids = next_token[:, None]  # (B, 1)
            new_positions = positions[:, -1:] + 1  # (B, 1); left padding: last column is real
            tokens = torch.cat([tokens, new_ids], dim=1)
            positions = torch.cat([positions, new_positions], dim=1)
            if finished.all():
                break
        return tokens
