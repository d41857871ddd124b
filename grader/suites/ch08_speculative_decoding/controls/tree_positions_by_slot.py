"""Negative control: the verifying pass numbers the tree's nodes by slot (L, L + 1, ...), not by depth, so siblings sit at different positions."""
# targets: tree_drafting


@torch.inference_mode()
def tree_generate(target, draft, input_ids, max_new_tokens, depth, top_k):  # negative control
    T = input_ids.shape[1]
    max_len = T + max_new_tokens + depth * top_k + depth + 2
    target_cache = RollbackKVCache.for_engine(target, max_len)
    draft_cache = RollbackKVCache.for_engine(draft, max_len)
    seq, accepted = input_ids[0].tolist(), []
    while len(seq) - T < max_new_tokens:
        L = len(seq)
        tokens, parents = draft_tree(draft, draft_cache, seq, depth, top_k)
        ancestors = tree_attention_mask(parents)
        tail = seq[target_cache.length:]
        positions = torch.arange(target_cache.length, L + len(tokens))[None]  # BUG: slots, not depths
        rows = torch.arange(len(tail) - 1, len(tail) + len(tokens))
        visibility = TreeVisibility(L, len(tail), ancestors, list(range(len(tokens))))
        choice = target.forward(torch.tensor([tail + tokens]), positions, target_cache, logits_at=rows,
                                visibility=visibility)[0].argmax(dim=-1).tolist()
        node, out = -1, []
        while True:
            out.append(choice[node + 1])
            node = next((i for i, (p, x) in enumerate(zip(parents, tokens)) if p == node and x == out[-1]), None)
            if node is None:
                break
        accepted.append(len(out) - 1)
        seq += out
        target_cache.truncate(L)
        draft_cache.truncate(min(draft_cache.length, L))
    return torch.tensor([seq[:T + max_new_tokens]]), {"accepted": accepted}
