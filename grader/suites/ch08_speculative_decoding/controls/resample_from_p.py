"""Negative control: a rejected draft is replaced by a sample from p, not from max(0, p - q)."""
# targets: verification

_verify = verify


def verify(p, q, draft_tokens, generator=None):  # negative control
    out = _verify(p, q, draft_tokens, generator)
    if len(out) <= len(draft_tokens):  # a rejection: BUG, its replacement is drawn from p
        out[-1] = int(torch.multinomial(p[len(out) - 1], 1, generator=generator))
    return out
