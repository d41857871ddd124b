"""Negative control: the drafter's cache is never rolled back, only the target's (greedy tokens stay right; acceptance drops)."""
# targets: speculative_decoding::test_accepted_counts_match_the_greedy_chain

@torch.inference_mode()
def speculative_generate(target, draft, input_ids, max_new_tokens, gamma, temperature=0.0, generator=None):  # negative control
    T = input_ids.shape[1]
    max_len = 4 * (T + max_new_tokens + gamma + 1)
    target_cache = RollbackKVCache.for_engine(target, max_len)
    draft_cache = RollbackKVCache.for_engine(draft, max_len)
    seq, accepted, last = input_ids[0].tolist(), [], torch.tensor([-1])

    def forward(engine, cache, tokens, logits_at, start=None):
        start = cache.length if start is None else start
        positions = torch.arange(start, start + len(tokens))[None]
        return engine.forward(torch.tensor([tokens]), positions, cache, logits_at=logits_at)[0]

    while len(seq) - T < max_new_tokens:
        length = len(seq)
        drafts, q_rows = [], []
        feed = seq[min(draft_cache.length, len(seq) - 1):]
        for _ in range(gamma):
            q = to_probs(forward(draft, draft_cache, feed, last)[-1], temperature)
            x = int(q.argmax()) if temperature == 0 else int(torch.multinomial(q, 1, generator=generator))
            drafts.append(x)
            q_rows.append(q)
            feed = [x]
        feed = seq[target_cache.length:] + drafts
        rows = torch.arange(len(feed) - gamma - 1, len(feed))
        p = to_probs(forward(target, target_cache, feed, rows), temperature)
        out = verify(p, torch.stack(q_rows), torch.tensor(drafts), generator).tolist()
        accepted.append(len(out) - 1)
        seq += out
        kept = length + len(out) - 1
        target_cache.truncate(kept)
        pass  # BUG: the drafter's cache is never rolled back
    return torch.tensor([seq[:T + max_new_tokens]]), {"accepted": accepted}
