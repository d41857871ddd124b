"""Exercise 1: INT8 per channel, INT4 per group (symmetric and asymmetric), packing. The
judge validates every returned tensor and recomputes the errors with its own formats."""
import random

import pytest
import torch

from grader.suites.ch07_quantization._formats import (
    check_int4, check_tensor, judge_dequantize, judge_int4, judge_pack, judge_unpack)


def weights(seed: int, rows: int, cols: int, special: str = "none", scale: float = 1.0) -> torch.Tensor:
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * scale
    if special == "outlier":
        w[0, 3] = 80 * scale
    elif special == "constant":
        w[:, :32] = -0.75 * scale
    elif special == "zero":
        w[:, :32] = 0.0
    elif special == "positive":
        w = w.abs() + 0.1 * scale
    return w


def cases(seed: int, n: int):
    rng = random.Random(seed)
    specials = ["none", "outlier", "constant", "zero", "positive"]
    for i in range(n):
        group_size = rng.choice([32, 64, 128])
        rows, cols = rng.randint(1, 24), group_size * rng.randint(1, 4)
        yield (weights(seed * 1000 + i, rows, cols, specials[i % len(specials)], 10 ** rng.uniform(-4, 3)),
               group_size, rng.random() < 0.5)
    # Row counts that are multiples of the group size: groups along the wrong axis would fit.
    for i, (rows, cols, group_size) in enumerate([(64, 128, 32), (128, 128, 64), (128, 256, 128)]):
        for symmetric in (True, False):
            yield weights(seed * 1000 + 900 + i, rows, cols, "outlier"), group_size, symmetric


@pytest.mark.points(1)
def test_int8_per_channel(student):
    """INT8: int8 codes in [-127, 127], one float32 scale per row, error within half a step"""
    for i, special in enumerate(["none", "outlier", "zero", "positive"]):
        w = weights(700 + i, 17, 96, special)
        result = student.quantize_int8(w)
        assert isinstance(result, (tuple, list)) and len(result) == 2, "quantize_int8 must return (q, scale)"
        q = check_tensor(result[0], "quantize_int8: q", w.shape, (torch.int8,))
        scale = check_tensor(result[1], "quantize_int8: scale", (17, 1), (torch.float32,))
        assert int(q.min()) >= -127, "INT8 codes lie in [-127, 127] (symmetric: -128 is never used)"
        absmax = w.abs().amax(1, keepdim=True)
        want = torch.where(absmax > 0, absmax / 127, torch.ones_like(absmax))
        torch.testing.assert_close(scale, want, rtol=1e-5, atol=0,
                                   msg=lambda m: f"scale = max|row| / 127 (1.0 for a zero row). {m}"[:300])
        error = (w - q.double().mul(want.double()).float()).abs()
        assert (error <= want * (0.5 + 1e-5)).all(), (
            f"INT8 ({special} rows): an error of {float((error / want).max()):.2f} steps; round to nearest")
        back = check_tensor(student.dequantize_int8(q, scale), "dequantize_int8", w.shape, (torch.float32,))
        torch.testing.assert_close(back, q.float() * scale, rtol=1e-6, atol=0)


@pytest.mark.points(3)
@pytest.mark.timeout(60)
def test_int4_within_half_a_step(student):
    """INT4: shapes, code ranges and scales as specified; every error within half a step
    (random shapes, group sizes 32/64/128, outliers, constant, zero and one-signed groups)"""
    for w, group_size, symmetric in cases(71, 40):
        what = f"quantize_int4({tuple(w.shape)}, group_size={group_size}, symmetric={symmetric})"
        codes, scales, zeros = check_int4(student.quantize_int4(w, group_size, symmetric), w, group_size, what)
        _, want_scales, _ = judge_int4(w, group_size, symmetric)
        if symmetric:
            assert (zeros == 8).all() and int(codes.min()) >= 1, (
                f"{what}: symmetric codes are q + 8 with q in [-7, 7] (zeros all 8)")
        torch.testing.assert_close(scales, want_scales, rtol=1e-5, atol=0, msg=lambda m: (
            f"{what}: the scales differ from the specification ({'max|group| / 7' if symmetric else '(hi - lo) / 15'}"
            f", one per group of consecutive input columns). {m}")[:400])
        step = want_scales.repeat_interleave(group_size, dim=1)
        error = (w - judge_dequantize(codes, scales, zeros, group_size)).abs()
        worst = float((error / step).max())
        assert worst <= 0.5 + 1e-4, (
            f"{what}: an error of {worst:.2f} steps, more than half a step: round (not floor), "
            f"check the clamp range and the zero-point")


@pytest.mark.points(1)
def test_dequantize_int4(student):
    """dequantize_int4 inverts the judge's codes exactly: (codes - zeros) * scales per group"""
    for w, group_size, symmetric in cases(72, 6):
        codes, scales, zeros = judge_int4(w, group_size, symmetric)
        got = check_tensor(student.dequantize_int4(codes, scales, zeros, group_size), "dequantize_int4",
                           w.shape, (torch.float32,))
        torch.testing.assert_close(got, judge_dequantize(codes, scales, zeros, group_size), rtol=1e-6, atol=1e-7,
                                   msg=lambda m: f"dequantize_int4 (group_size {group_size}): {m}"[:300])


@pytest.mark.points(2)
def test_packing_order(student):
    """pack_int4: column 2j in the low nibble, 2j + 1 in the high; unpack_int4 inverts it"""
    generator = torch.Generator().manual_seed(73)
    for rows, cols in [(1, 2), (3, 8), (16, 64), (5, 256)]:
        codes = torch.randint(0, 16, (rows, cols), generator=generator, dtype=torch.uint8)
        packed = check_tensor(student.pack_int4(codes), "pack_int4", (rows, cols // 2), (torch.uint8,))
        assert torch.equal(packed, judge_pack(codes)), (
            "pack_int4: byte j must hold column 2j in its LOW nibble and column 2j + 1 in its HIGH nibble")
        back = check_tensor(student.unpack_int4(judge_pack(codes)), "unpack_int4", (rows, cols), (torch.uint8,))
        assert torch.equal(back, codes), "unpack_int4 must invert pack_int4 (low nibble first)"
    assert torch.equal(judge_unpack(judge_pack(codes)), codes)


@pytest.mark.points(1)
def test_refuses_what_it_cannot_represent(student):
    """NaN or Inf weights and an in_features not divisible by the group size raise ValueError"""
    finite = weights(74, 4, 64)
    for bad, what in ((float("nan"), "NaN"), (float("inf"), "Inf"), (float("-inf"), "-Inf")):
        w = finite.clone()
        w[2, 5] = bad
        for call, name in ((lambda: student.quantize_int4(w, 32, True), "quantize_int4"),
                           (lambda: student.quantize_int8(w), "quantize_int8")):
            with pytest.raises(ValueError):
                call()
                pytest.fail(f"{name} must raise ValueError on a weight holding {what}")
    with pytest.raises(ValueError):
        student.quantize_int4(weights(75, 4, 96), 64, False)
        pytest.fail("quantize_int4 must raise ValueError when in_features % group_size != 0 (96 % 64)")
