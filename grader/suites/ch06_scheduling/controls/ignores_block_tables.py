"""Negative control: run_batch keeps each request's KV in a run of consecutive blocks of
its own (a contiguous cache in disguise) instead of the blocks of seq.block_table, so it
never sees the prefix another request computed."""
# targets: real_engine


def run_batch(engine, batch, kv):
    size, num_blocks = kv.block_size, kv.num_blocks
    ids, positions, slots, query_lens, context_lens, tables, emitting = [], [], [], [], [], [], []
    for seq, n in batch.scheduled:
        start = max(seq.num_cached_tokens, seq.num_computed_tokens)
        end = n + seq.num_computed_tokens
        if start >= end:
            continue
        first = seq.request_id * 16  # BUG: request r owns blocks 16r, 16r + 1, ... (mod the pool)
        table = [(first + j) % num_blocks for j in range(-(-end // size))]
        pos = torch.arange(start, end)
        ids.append(torch.tensor(seq.token_ids[start:end], dtype=torch.long))
        positions.append(pos)
        slots.append(torch.tensor(table, dtype=torch.long)[pos // size] * size + pos % size)
        query_lens.append(end - start)
        context_lens.append(end)
        tables.append(table)
        if end == seq.num_tokens:
            emitting.append((seq.request_id, sum(query_lens) - 1))
    if not ids:
        return {}
    attention = StepAttention(kv, torch.cat(slots), query_lens, context_lens, tables)
    logits = engine.forward(torch.cat(ids)[None], torch.cat(positions)[None], attention)
    next_tokens = logits[0, torch.tensor([i for _, i in emitting], dtype=torch.long)].argmax(dim=-1)
    return {rid: int(t) for (rid, _), t in zip(emitting, next_tokens)}
