"""Negative control: GQA heads mapped with repeat (tiling) instead of repeat_interleave."""
# targets: attention


def attention(query, keys, values, query_positions, key_positions):  # negative control
    group = query.shape[1] // keys.shape[1]
    keys = keys.repeat(1, group, 1, 1)  # BUG: query head h reads KV head h % H_kv
    values = values.repeat(1, group, 1, 1)
    scores = query @ keys.transpose(-1, -2) * query.shape[-1] ** -0.5
    visible = ((key_positions[:, None, :] >= 0)
               & (key_positions[:, None, :] <= query_positions[:, :, None]))
    scores = scores.masked_fill(~visible[:, None], torch.finfo(scores.dtype).min)
    return torch.softmax(scores.float(), dim=-1).to(query.dtype) @ values
