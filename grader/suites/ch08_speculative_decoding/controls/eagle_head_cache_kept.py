"""Negative control: the head's cache is cut back one item short, so it keeps the item of its first guess (its own feature, perhaps a rejected token)."""
# targets: eagle_head::test_eagle_generate_drafts_as_the_text_says


@torch.inference_mode()
def eagle_generate(target, head, input_ids, max_new_tokens, gamma):  # negative control
    T = input_ids.shape[1]
    max_len = T + max_new_tokens + gamma + 2
    decoder = head.decoder()  # the head's layer, built once
    target_cache = RollbackKVCache.for_engine(target, max_len)
    head_cache = RollbackKVCache.for_engine(decoder, max_len)
    seq, accepted = input_ids[0].tolist(), []
    _, (features,) = target.forward(input_ids[:, :-1], torch.arange(T - 1)[None], target_cache,
                                    logits_at=torch.tensor([T - 2]), hidden_at=(-1,))
    while len(seq) - T < max_new_tokens:
        L, start = len(seq), head_cache.length
        logits, predicted = head(torch.tensor([seq[start + 1:L]]), features[:, start:L - 1],
                                 torch.arange(start, L - 1)[None], head_cache,
                                 logits_at=torch.tensor([L - 2 - start]), decoder=decoder)
        drafts, feature = [int(logits[0, -1].argmax())], predicted[:, -1:]
        for i in range(1, gamma):  # further along the chain: its own predicted features
            logits, predicted = head(torch.tensor([drafts[-1:]]), feature, torch.tensor([[L - 2 + i]]),
                                     head_cache, decoder=decoder)
            drafts.append(int(logits[0, -1].argmax()))
            feature = predicted[:, -1:]
        known = target_cache.length
        feed = seq[known:] + drafts
        logits, (fresh,) = target.forward(torch.tensor([feed]), torch.arange(known, known + len(feed))[None],
                                          target_cache, logits_at=torch.arange(L - 1 - known, len(feed)),
                                          hidden_at=(-1,))
        choice = logits[0].argmax(dim=-1).tolist()
        n = 0
        while n < gamma and drafts[n] == choice[n]:
            n += 1
        accepted.append(n)
        seq += drafts[:n] + [choice[n]]
        features = torch.cat([features[:, :known], fresh[:, :L + n - known]], dim=1)
        target_cache.truncate(L + n)
        head_cache.truncate(L)  # BUG: keeps the item of its first guess
    return torch.tensor([seq[:T + max_new_tokens]]), {"accepted": accepted}
