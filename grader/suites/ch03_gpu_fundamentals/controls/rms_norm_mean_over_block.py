"""Negative control: the RMSNorm kernel divides the sum of squares by the block size, not by D (right
only when D is a power of two)."""
# targets: triton_kernels::test_rms_norm


@triton.jit
def rms_norm_kernel(x_ptr, weight_ptr, out_ptr, row_stride, D, eps, BLOCK: tl.constexpr):  # negative control
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < D
    x = tl.load(x_ptr + row * row_stride + cols, mask=mask, other=0.0).to(tl.float32)
    mean_square = tl.sum(x * x, axis=0) / BLOCK  # BUG: the padded lanes count
    weight = tl.load(weight_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    out = x * (1.0 / tl.sqrt(mean_square + eps)) * weight
    tl.store(out_ptr + row * row_stride + cols, out.to(out_ptr.dtype.element_ty), mask=mask)
