"""Negative control: each depth keeps the children most likely on their own, not the paths with the highest cumulative log-probability."""
# targets: tree_drafting


def draft_tree(draft, cache, seq, depth, top_k):  # negative control
    L = len(seq)
    tail = seq[cache.length:]
    logits = draft.forward(torch.tensor([tail]), torch.arange(cache.length, L)[None], cache,
                           logits_at=torch.tensor([len(tail) - 1]))[0, -1]
    scores, best = F.log_softmax(logits, dim=-1).topk(top_k)
    tokens, parents = best.tolist(), [-1] * top_k
    frontier = list(range(top_k))
    for level in range(1, depth):
        visibility = TreeVisibility(L, 0, tree_attention_mask(parents), frontier)
        logits = draft.forward(torch.tensor([[tokens[i] for i in frontier]]),
                               torch.full((1, len(frontier)), L - 1 + level), cache, visibility=visibility)[0]
        scores, best = F.log_softmax(logits, dim=-1).topk(top_k, dim=-1)
        local = scores.flatten()  # BUG: the child's own log-probability, not the path's
        chosen = []
        for index in local.topk(top_k).indices.tolist():
            row, column = divmod(index, top_k)
            tokens.append(int(best[row, column]))
            parents.append(frontier[row])
            chosen.append(len(tokens) - 1)
        frontier = chosen
    cache.truncate(L)
    return tokens, parents
