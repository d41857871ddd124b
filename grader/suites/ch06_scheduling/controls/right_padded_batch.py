"""Negative control: run_batch pads on the right and reads the last column, which is padding
for every row shorter than the longest."""
# targets: real_engine


def run_batch(engine, batch):
    ready = [seq for seq, n in batch.scheduled if seq.num_computed_tokens + n == seq.num_tokens]
    if not ready:
        return {}
    width = max(len(seq.token_ids) for seq in ready)
    ids = torch.zeros(len(ready), width, dtype=torch.long)
    positions = torch.full((len(ready), width), -1, dtype=torch.long)
    for row, seq in enumerate(ready):
        ids[row, :len(seq.token_ids)] = torch.tensor(seq.token_ids)
        positions[row, :len(seq.token_ids)] = torch.arange(len(seq.token_ids))
    logits = engine.forward(ids, positions)
    return {seq.request_id: int(t) for seq, t in zip(ready, logits[:, -1].argmax(dim=-1))}
