"""Negative control: the KV link is assumed free (no loss at 12.5 GB/s for the MHA model)."""
# targets: thinking
ANSWER_MHA_LINK_LOSS = 0.0
