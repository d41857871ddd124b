"""Negative control: run_batch computes every token from num_computed_tokens, prefix hits
included: it reads token ids whose KV is already cached (the grader hides them) and
writes over blocks other sequences share."""
# targets: real_engine


def run_batch(engine, batch, kv):
    size = kv.block_size
    ids, positions, slots, query_lens, context_lens, tables, emitting = [], [], [], [], [], [], []
    for seq, n in batch.scheduled:
        start, end = seq.num_computed_tokens, seq.num_computed_tokens + n  # BUG: ignores num_cached_tokens
        pos = torch.arange(start, end)
        table = torch.tensor(seq.block_table, dtype=torch.long)
        ids.append(torch.tensor(seq.token_ids[start:end], dtype=torch.long).clamp(min=0))
        positions.append(pos)
        slots.append(table[pos // size] * size + pos % size)
        query_lens.append(end - start)
        context_lens.append(end)
        tables.append(seq.block_table)
        if end == seq.num_tokens:
            emitting.append((seq.request_id, sum(query_lens) - 1))
    attention = StepAttention(kv, torch.cat(slots), query_lens, context_lens, tables)
    logits = engine.forward(torch.cat(ids)[None], torch.cat(positions)[None], attention)
    if not emitting:
        return {}
    next_tokens = logits[0, torch.tensor([i for _, i in emitting])].argmax(dim=-1)
    return {rid: int(t) for (rid, _), t in zip(emitting, next_tokens)}
