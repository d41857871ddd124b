"""Negative control: tau sums a^k for k < g only, (1 - a^g) / (1 - a): the bonus term is lost."""
# targets: cost_model


def expected_tokens_per_cycle(a, gamma):  # negative control
    if a >= 1:
        return float(gamma)
    return (1 - a ** gamma) / (1 - a)
