"""Negative control: the KV link is assumed free (no loss at 12.5 GB/s for the MHA model)."""
# targets: thinking::test_mha_link_loss


def question_3():
    return 0.0
