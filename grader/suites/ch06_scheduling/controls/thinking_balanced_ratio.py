"""Negative control: one decode GPU per prefill GPU assumed best for one model, and the GQA ratio copied for the other."""
# targets: thinking
ANSWER_BEST_RATIO_GQA = "1P1D"
ANSWER_BEST_RATIO_MHA = "2P1D"
