"""Negative control: calls a step compute-bound when it does more FLOPs than it moves bytes (intensity > 1),
ignoring the ridge point, so a batch-1 GEMV in float32 or a batch-256 GEMM on an H100 is misjudged."""
# targets: roofline::test_bottleneck


def bottleneck(measured_s, flops, bytes_moved, flops_per_s, bytes_per_s, overhead_factor=4.0):  # negative control
    if measured_s > overhead_factor * roofline_seconds(flops, bytes_moved, flops_per_s, bytes_per_s):
        return "overhead"
    return "compute" if flops >= bytes_moved else "memory"  # BUG: intensity against 1, not the ridge
