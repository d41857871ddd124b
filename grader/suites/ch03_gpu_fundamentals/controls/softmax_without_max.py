"""Negative control: the softmax kernel exponentiates the raw scores (no row maximum subtracted): right on
small scores, inf / inf = NaN once a score passes 88.7, and 0 / 0 when every score is very negative."""
# targets: triton_softmax::test_large_magnitude_rows


@triton.jit
def softmax_kernel(x_ptr, out_ptr, x_row_stride, out_row_stride, n_cols, BLOCK: tl.constexpr):  # negative control
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * x_row_stride + cols, mask=mask, other=-float("inf")).to(tl.float32)
    numerator = tl.exp(x)  # BUG: exp(x - max(x)) is the same ratio and cannot overflow
    out = numerator / tl.sum(numerator, axis=0)
    tl.store(out_ptr + row * out_row_stride + cols, out.to(out_ptr.dtype.element_ty), mask=mask)
