"""Negative control: the matmul kernel keeps its running sum in float16 (each step's tl.dot rounded to
float16 before it is added): exact enough for short dot products, it drops the small terms of long ones."""
# targets: triton_matmul::test_accumulates_in_float32


@triton.jit
def matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K,  # negative control
                  stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    steps = tl.arange(0, BLOCK_K)
    a_tile = a_ptr + rows[:, None] * stride_am + steps[None, :] * stride_ak
    b_tile = b_ptr + steps[:, None] * stride_bk + cols[None, :] * stride_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float16)  # BUG: a float16 running sum
    for k in range(0, K, BLOCK_K):
        in_k = steps < K - k
        a = tl.load(a_tile, mask=(rows[:, None] < M) & in_k[None, :], other=0.0)
        b = tl.load(b_tile, mask=in_k[:, None] & (cols[None, :] < N), other=0.0)
        acc += tl.dot(a, b, input_precision="ieee").to(tl.float16)
        a_tile += BLOCK_K * stride_ak
        b_tile += BLOCK_K * stride_bk
    c_tile = c_ptr + rows[:, None] * stride_cm + cols[None, :] * stride_cn
    tl.store(c_tile, acc.to(c_ptr.dtype.element_ty), mask=(rows[:, None] < M) & (cols[None, :] < N))
