"""Negative control: the RMSNorm kernel squares and sums in the input's dtype; float16 rows with values
above 255.99 overflow to inf."""
# targets: triton_kernels::test_rms_norm_edge_values


@triton.jit
def rms_norm_kernel(x_ptr, weight_ptr, out_ptr, row_stride, D, eps, BLOCK: tl.constexpr):  # negative control
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < D
    x = tl.load(x_ptr + row * row_stride + cols, mask=mask, other=0.0)  # BUG: kept in x's dtype
    mean_square = tl.sum(x * x, axis=0) / D
    weight = tl.load(weight_ptr + cols, mask=mask, other=0.0)
    out = x * (1.0 / tl.sqrt(mean_square.to(tl.float32) + eps)) * weight
    tl.store(out_ptr + row * row_stride + cols, out.to(out_ptr.dtype.element_ty), mask=mask)
