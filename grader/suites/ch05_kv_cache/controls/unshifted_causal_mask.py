"""Negative control: the causal mask is aligned by index (tril), not by position: wrong when T_q < T_k."""
# targets: attention


def attention(query, keys, values, query_positions, key_positions):  # negative control
    group = query.shape[1] // keys.shape[1]
    keys = keys.repeat_interleave(group, dim=1)
    values = values.repeat_interleave(group, dim=1)
    scores = query @ keys.transpose(-1, -2) * query.shape[-1] ** -0.5
    T_q, T_k = scores.shape[-2:]
    visible = torch.ones(T_q, T_k, dtype=torch.bool).tril()  # BUG: top-left aligned
    visible = visible & (key_positions[:, None, :] >= 0)
    scores = scores.masked_fill(~visible[:, None], torch.finfo(scores.dtype).min)
    return torch.softmax(scores.float(), dim=-1).to(query.dtype) @ values
