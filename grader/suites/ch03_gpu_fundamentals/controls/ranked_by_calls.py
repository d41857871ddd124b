"""Negative control: ranks operators by their number of calls, not by their total self time."""
# targets: profile_summary


def top_operators(events, k=5):  # negative control
    totals, calls = {}, {}
    for name, self_us in events:
        totals[name] = totals.get(name, 0.0) + self_us
        calls[name] = calls.get(name, 0) + 1
    everything = sum(totals.values())
    ranked = sorted(totals, key=lambda name: (-calls[name], name))[:k]  # BUG: the most frequent, not the slowest
    return [(name, totals[name], calls[name], totals[name] / everything if everything else 0.0) for name in ranked]
