"""Negative control: decode positions are column indices (ignoring left padding), while the
prefill's are right: wrong position ids for every padded row."""
# targets: contiguous_cache


def generate_with_cache(engine, input_ids, attention_mask=None, max_new_tokens=32):  # negative control
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    w = engine.weights
    batch, prompt_len = input_ids.shape
    cache = ContiguousKVCache(len(w.layers), batch, w.n_kv_heads, w.head_dim, prompt_len + max_new_tokens)
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, NO_TOKEN)
    tokens, step_ids, step_positions = input_ids, input_ids, positions
    finished = torch.zeros(batch, dtype=torch.bool)
    with torch.no_grad():
        for _ in range(max_new_tokens):
            next_token = engine.forward(step_ids, step_positions, cache)[:, -1].argmax(dim=-1)
            if engine.eos_token_id is not None:
                next_token = next_token.masked_fill(finished, engine.pad_token_id)
                finished |= next_token == engine.eos_token_id
            step_ids = next_token[:, None]
            step_positions = torch.full((batch, 1), tokens.shape[1])  # BUG: the column, not the position
            tokens = torch.cat([tokens, step_ids], dim=1)
            if finished.all():
                break
    return tokens
