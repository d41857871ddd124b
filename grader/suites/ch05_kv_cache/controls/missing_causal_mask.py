"""Negative control: no causal mask at all (only empty slots are hidden): queries see the future."""
# targets: attention


def attention(query, keys, values, query_positions, key_positions):  # negative control
    group = query.shape[1] // keys.shape[1]
    keys = keys.repeat_interleave(group, dim=1)
    values = values.repeat_interleave(group, dim=1)
    scores = query @ keys.transpose(-1, -2) * query.shape[-1] ** -0.5
    visible = (key_positions[:, None, :] >= 0).expand(-1, query.shape[2], -1)  # BUG: no causality
    scores = scores.masked_fill(~visible[:, None], torch.finfo(scores.dtype).min)
    return torch.softmax(scores.float(), dim=-1).to(query.dtype) @ values
