"""A KV cache a CUDA graph can capture: the instructors' copy, for `tools/gpu_check.py`
and the engine tests. It is a complete answer to chapter 5's contiguous-cache exercise
(written without host syncs), so it lives here and never in `llmopt`, which students
import. Use: `CudaGraphDecoder(engine, StaticKVCache(engine.weights, batch_size, max_len))`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from llmopt.engine import NO_TOKEN, KVView, LlamaWeights


class StaticKVCache:
    """A `KVCache` whose tensors never move and never change shape, as a CUDA graph needs.

    Per layer, (B, n_kv_heads, max_len + 1, head_dim) keys and values; token at position
    p of row b lives in slot p, and the extra last slot takes the writes of padding
    tokens (position NO_TOKEN), which nothing ever reads. `update` scatters without
    reading anything back to the host and returns the whole buffer: the visibility mask
    hides the slots not yet written. One positions row per sequence serves every layer
    (each layer stores the same tokens), so the engine builds the mask once per step.
    """

    def __init__(self, weights: LlamaWeights, batch_size: int, max_len: int):
        device, dtype = weights.embed_tokens.device, weights.embed_tokens.dtype
        shape = (len(weights.layers), batch_size, weights.n_kv_heads, max_len + 1,
                 weights.head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)  # (L, B, H_kv, S + 1, hd)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.positions = torch.full((batch_size, max_len + 1), NO_TOKEN, dtype=torch.long,
                                    device=device)  # (B, S + 1)
        self.max_len, self.batch_size = max_len, batch_size

    def reset(self) -> None:
        """Forget every token (the buffers stay where they are)."""
        self.positions.fill_(NO_TOKEN)

    def update(self, layer: int, keys: Tensor, values: Tensor, positions: Tensor) -> KVView:
        slots = positions.masked_fill(positions < 0, self.max_len)  # (B, T): padding -> spare
        index = slots[:, None, :, None].expand_as(keys)  # (B, H_kv, T, hd)
        self.keys[layer].scatter_(2, index, keys)
        self.values[layer].scatter_(2, index, values)
        if layer == 0:  # every layer stores the same positions
            self.positions.scatter_(1, slots, positions)
        return KVView(self.keys[layer], self.values[layer], self.positions)
