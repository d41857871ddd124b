"""Negative control: keeps a draft when it is the target's argmax, at every temperature."""
# targets: verification


def verify(p, q, draft_tokens, generator=None):  # negative control
    g = draft_tokens.shape[0]
    if q.shape[0] != g or p.shape[0] != g + 1:
        raise ValueError("shapes")
    out = []
    for i in range(g):
        best = int(p[i].argmax())
        if int(draft_tokens[i]) != best:  # BUG: right only at T = 0
            return torch.tensor(out + [best], dtype=torch.long)
        out.append(best)
    out.append(int(torch.multinomial(p[g], 1, generator=generator)))
    return torch.tensor(out, dtype=torch.long)
