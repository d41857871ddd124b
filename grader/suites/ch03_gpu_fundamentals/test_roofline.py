"""Exercise 2: FLOPs and bytes of GEMM/GEMV and decode attention, roofline time, and the
bottleneck classifier, against the judge's formulas on hidden shapes and devices."""
import pytest

from grader.suites._answers import number


def close(got, want, what):
    value = number(got, what)
    assert abs(value - want) <= 1e-9 * abs(want), f"{what} = {value:.6g}, expected {want:.6g}"


def pair(got, what):
    assert isinstance(got, (tuple, list)) and len(got) == 2, f"{what} returns (flops, bytes), got {got!r:.80}"
    return got


@pytest.mark.points(1)
def test_matmul_cost(student):
    """2mnk FLOPs; (mk + kn + mn) elements once each; GEMV, skinny and square shapes, 1 to 4 bytes"""
    for m, n, k, b in ((1, 4096, 14336, 2), (7, 300, 129, 4), (512, 512, 512, 1), (64, 128256, 4096, 2)):
        flops, moved = pair(student.matmul_cost(m, n, k, b), f"matmul_cost({m}, {n}, {k}, {b})")
        close(flops, 2.0 * m * n * k, f"FLOPs of matmul_cost({m}, {n}, {k}, {b})")
        close(moved, (m * k + k * n + m * n) * b, f"bytes of matmul_cost({m}, {n}, {k}, {b}) (inputs read once, "
                                                  f"output written once)")


@pytest.mark.points(1)
def test_decode_attention_cost(student):
    """FLOPs 4 x context x head_dim per query head; bytes of K and V per KV head, plus q and the output"""
    for batch, context, h, h_kv, hd, b in ((1, 4096, 32, 8, 128, 2), (16, 1000, 8, 2, 32, 4),
                                           (3, 777, 12, 12, 64, 2), (64, 32768, 64, 1, 128, 1)):
        flops, moved = pair(student.decode_attention_cost(batch, context, h, h_kv, hd, b), "decode_attention_cost")
        close(flops, 4.0 * batch * h * context * hd, f"FLOPs of decode attention (batch {batch}, context {context})")
        close(moved, batch * (2 * h_kv * context * hd + 2 * h * hd) * b,
              f"bytes of decode attention (batch {batch}, context {context}, heads {h}/{h_kv}): K and V are read "
              f"once per KV head, not per query head")


@pytest.mark.points(1)
def test_roofline_seconds(student):
    """max of the FLOP time and the byte time, on both sides of the ridge"""
    for flops, moved, p, w in ((2e12, 1e9, 989.4e12, 3.35e12), (3e9, 6e9, 989.4e12, 4.8e12),
                               (5e10, 1e10, 5e10, 1e10), (1.0, 1e6, 5e10, 5e9)):
        close(student.roofline_seconds(flops, moved, p, w), max(flops / p, moved / w),
              f"roofline_seconds({flops:g}, {moved:g}, {p:g}, {w:g})")


@pytest.mark.points(3)
def test_bottleneck(student):
    """memory, compute or overhead, for GEMV, GEMM and attention, on an H100, an H200 and a CPU"""
    devices = {"H100": (989.4e12, 3.35e12), "H200": (989.4e12, 4.8e12), "CPU": (5e10, 5e9)}
    works = {"GEMV 4096x4096 bf16": (2.0 * 4096 * 4096, (4096 * 4096 + 2 * 4096) * 2.0),
             "GEMM 8192^3 bf16": (2.0 * 8192 ** 3, 3 * 8192 ** 2 * 2.0),
             "batch-256 GEMM": (2.0 * 256 * 4096 * 4096, (2 * 256 * 4096 + 4096 * 4096) * 2.0),
             "decode attention": (4.0 * 32 * 4096 * 128, (2 * 8 * 4096 * 128 + 2 * 32 * 128) * 2.0)}
    for device, (p, w) in devices.items():
        for name, (flops, moved) in works.items():
            floor = max(flops / p, moved / w)
            bound = "compute" if flops / p >= moved / w else "memory"
            for factor, factor_arg, want in ((1.0, None, bound), (3.9, None, bound), (4.1, None, "overhead"),
                                             (1.5, 1.2, "overhead"), (9.0, 10.0, bound)):
                args = (floor * factor, flops, moved, p, w) + ((factor_arg,) if factor_arg else ())
                got = student.bottleneck(*args)
                assert got == want, (
                    f"{name} on {device} measured at {factor}x its roofline time"
                    f"{f', overhead_factor {factor_arg}' if factor_arg else ''}: {got!r:.30}, expected {want!r}. "
                    f"Memory- or compute-bound is decided by the larger roofline term (the ridge point "
                    f"peak / bandwidth), not by FLOPs against bytes")
