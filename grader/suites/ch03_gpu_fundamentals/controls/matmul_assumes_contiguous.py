"""Negative control: the matmul launcher passes the strides a contiguous (M, K) and (K, N) would have, not
the operands' own, so a transposed weight (x @ W.T) or a slice of a wider matrix is read in the wrong order
(right only for contiguous inputs)."""
# targets: triton_matmul::test_strided_inputs


def matmul_triton(a, b, *, block_m=None, block_n=None, block_k=None, num_warps=None, num_stages=None):  # negative control
    (M, K), N = a.shape, b.shape[1]
    c = torch.empty((M, N), dtype=a.dtype, device=a.device)
    if M and N:
        matmul_kernel[(triton.cdiv(M, 32), triton.cdiv(N, 32))](
            a, b, c, M, N, K, K, 1, N, 1, c.stride(0), c.stride(1),  # BUG: row-major strides assumed
            BLOCK_M=32, BLOCK_N=32, BLOCK_K=32)
    return c
