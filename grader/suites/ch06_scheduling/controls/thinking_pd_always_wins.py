"""Negative control: disaggregation assumed to win and a balanced ratio assumed best, without reading the grid."""
# targets: thinking
ANSWER_BEST_PER_GPU = "1P1D"
ANSWER_BEST_PD_RATIO = "1P1D"
