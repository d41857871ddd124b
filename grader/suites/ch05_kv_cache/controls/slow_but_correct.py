"""Negative control: slow but correct: "cached" decoding that recomputes every step, and
paged attention that gathers one token at a time in Python. Fails the performance checks only."""
# targets: contiguous_cache::test_cached_decoding_is_faster


def generate_with_cache(engine, input_ids, attention_mask=None, max_new_tokens=32):  # negative control
    return engine.generate(input_ids, attention_mask, max_new_tokens)  # recompute, no cache


def paged_attention(query, key_cache, value_cache, block_tables, context_lens):  # negative control
    block_size = key_cache.shape[1]
    out = []
    for b in range(query.shape[0]):
        rows = [(int(block_tables[b, t // block_size]), t % block_size) for t in range(int(context_lens[b]))]
        keys = torch.stack([key_cache[blk, off] for blk, off in rows])  # (T, H_kv, D)
        values = torch.stack([value_cache[blk, off] for blk, off in rows])
        group = query.shape[1] // keys.shape[1]
        k = keys.transpose(0, 1).repeat_interleave(group, 0)
        v = values.transpose(0, 1).repeat_interleave(group, 0)
        weights = torch.softmax((query[b][:, None] @ k.transpose(-1, -2)).float() * query.shape[-1] ** -0.5, -1)
        out.append((weights.to(query.dtype) @ v)[:, 0])
    return torch.stack(out)
