"""Negative control: the questions answered with the plausible wrong numbers (weights at 4
bits with no scales, all weights shrunk by 16 / 4.125, and "faster because fewer bytes")."""
# targets: questions


def q1_h200s_for_int4_trillion():  # negative control
    return math.ceil(1.0e12 * 4 / 8 / 1e9 / 141.0)  # BUG: no scales, all 141 GB usable


def q2_int4_decode_speedup():  # negative control
    return 16 / 4.125  # BUG: the LM head is not quantized


def q3_large_batch_w4a16():  # negative control
    return "a"
