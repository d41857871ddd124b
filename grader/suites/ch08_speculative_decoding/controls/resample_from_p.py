"""Negative control: a rejected draft is replaced by a sample from p, not from max(0, p - q)."""
# targets: verification


def verify(p, q, draft_tokens, generator=None):  # negative control
    g = draft_tokens.shape[0]
    if q.shape[0] != g or p.shape[0] != g + 1:
        raise ValueError("shapes")
    out = []
    for i in range(g):
        x = int(draft_tokens[i])
        if torch.rand((), generator=generator) * q[i, x] < p[i, x]:
            out.append(x)
            continue
        out.append(int(torch.multinomial(p[i], 1, generator=generator)))  # BUG: p, not the residual
        return torch.tensor(out, dtype=torch.long)
    out.append(int(torch.multinomial(p[g], 1, generator=generator)))
    return torch.tensor(out, dtype=torch.long)
