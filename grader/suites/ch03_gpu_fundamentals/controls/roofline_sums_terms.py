"""Negative control: the roofline time adds the FLOP time and the byte time instead of taking the larger."""
# targets: roofline::test_roofline_seconds


def roofline_seconds(flops, bytes_moved, flops_per_s, bytes_per_s):  # negative control
    return flops / flops_per_s + bytes_moved / bytes_per_s  # BUG: no overlap of memory and compute
