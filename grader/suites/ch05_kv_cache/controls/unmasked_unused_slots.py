"""Negative control: slots past the context length are masked in the scores only; their
values still enter weights @ V, and 0 * NaN = NaN. Right on clean caches, NaN where an
unused slot holds NaN (vLLM zeroes them). Fails that check only."""
# targets: paged_attention


def paged_attention(query, key_cache, value_cache, block_tables, context_lens):  # negative control
    batch, n_heads, head_dim = query.shape
    block_size, n_kv_heads = key_cache.shape[1], key_cache.shape[2]
    max_len = block_tables.shape[1] * block_size
    tables = block_tables.clamp(min=0)
    keys = key_cache[tables].flatten(1, 2)  # (B, max_len, H_kv, D)
    values = value_cache[tables].flatten(1, 2)
    group = n_heads // n_kv_heads
    query = query.view(batch, n_kv_heads, group, head_dim)
    scores = torch.einsum("bkgd,btkd->bkgt", query, keys) * head_dim ** -0.5
    valid = torch.arange(max_len, device=query.device)[None] < context_lens[:, None]
    scores = scores.masked_fill(~valid[:, None, None], float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1).to(query.dtype)
    out = torch.einsum("bkgt,btkd->bkgd", weights, values)  # BUG: NaN values in unused slots leak
    return out.reshape(batch, n_heads, head_dim)
