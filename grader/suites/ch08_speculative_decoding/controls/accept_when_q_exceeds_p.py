"""Negative control: accepts a draft with probability min(1, q/p), the ratio upside down."""
# targets: verification


def verify(p, q, draft_tokens, generator=None):  # negative control
    g = draft_tokens.shape[0]
    if q.shape[0] != g or p.shape[0] != g + 1:
        raise ValueError("shapes")
    out = []
    for i in range(g):
        x = int(draft_tokens[i])
        if torch.rand((), generator=generator) * p[i, x] < q[i, x]:  # BUG: q / p
            out.append(x)
            continue
        residual = (p[i] - q[i]).clamp_min(0)
        weights = residual / residual.sum() if residual.sum() > 0 else p[i]
        out.append(int(torch.multinomial(weights, 1, generator=generator)))
        return torch.tensor(out, dtype=torch.long)
    out.append(int(torch.multinomial(p[g], 1, generator=generator)))
    return torch.tensor(out, dtype=torch.long)
