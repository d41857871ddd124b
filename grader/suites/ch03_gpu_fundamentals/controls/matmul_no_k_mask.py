"""Negative control: the matmul kernel masks rows past M and columns past N but not the lanes past K in the
last step, so it adds the products of whatever lies beyond the end of each row of A and column of B (right
only when BLOCK_K divides K)."""
# targets: triton_matmul::test_matmul


@triton.jit
def matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K,  # negative control
                  stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    steps = tl.arange(0, BLOCK_K)
    a_tile = a_ptr + rows[:, None] * stride_am + steps[None, :] * stride_ak
    b_tile = b_ptr + steps[:, None] * stride_bk + cols[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k in range(0, K, BLOCK_K):
        a = tl.load(a_tile, mask=rows[:, None] < M, other=0.0)  # BUG: no mask on K
        b = tl.load(b_tile, mask=cols[None, :] < N, other=0.0)  # BUG: no mask on K
        acc += tl.dot(a, b, input_precision="ieee")
        a_tile += BLOCK_K * stride_ak
        b_tile += BLOCK_K * stride_bk
    c_tile = c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn
    tl.store(c_tile, acc.to(c_ptr.dtype.element_ty), mask=(rows[:, None] < M) & (cols[None, :] < N))
