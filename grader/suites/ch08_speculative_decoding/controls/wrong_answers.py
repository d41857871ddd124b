"""Negative control: every question answered wrongly."""
# targets: questions


def q1_flat_verification_speedup():  # negative control
    return expected_tokens_per_cycle(0.8, 6)  # forgets the drafts' cost


def q2_break_even_acceptance():  # negative control
    return 0.5


def q3_large_batch():  # negative control
    return "b"
