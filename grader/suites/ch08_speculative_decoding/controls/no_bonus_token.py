"""Negative control: when every draft is accepted, no bonus token is sampled from p[g]."""
# targets: verification

_verify = verify


def verify(p, q, draft_tokens, generator=None):  # negative control
    out = _verify(p, q, draft_tokens, generator)
    return out[:-1] if len(out) == len(draft_tokens) + 1 else out  # BUG: the bonus token is dropped
