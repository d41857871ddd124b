"""Negative control: the reference kernel, launched with the scales cast to bfloat16 (stored in
the wrong dtype: 8 bits of mantissa, not float16's 11 or float32's 24). Each weight moves by
up to 0.4 % of itself, far above float32 rounding: fails the float32 tests, whatever the
codes."""
# targets: w4a16_triton

_reference_w4a16_matmul = w4a16_matmul


def w4a16_matmul(x, packed, scales, zeros, group_size, **knobs):
    return _reference_w4a16_matmul(x, packed, scales.to(torch.bfloat16), zeros, group_size, **knobs)
