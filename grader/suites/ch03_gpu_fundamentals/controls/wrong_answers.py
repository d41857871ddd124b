"""Negative control: the questions answered with the plausible wrong numbers (the H100's bandwidth, the
ridge point itself as the batch, and "memory-bound because decode is")."""
# targets: questions


def q1_h200_decode_bound():  # negative control
    return 3.35e12 / 15.0e9  # BUG: the H100's bandwidth


def q2_compute_bound_batch():  # negative control
    return round(989.4e12 / 3.35e12)  # BUG: intensity taken as exactly B


def q3_small_model_on_gpu():  # negative control
    return "a"
