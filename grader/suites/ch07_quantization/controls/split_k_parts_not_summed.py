"""Negative control: the reference launcher returns the first K part's partial sums only: right
whenever K is short enough to go in one part, wrong (the other parts' columns missing) as
soon as split-K splits, here on the long-K shapes of the float32 test."""
# targets: w4a16_triton


def w4a16_matmul(x, packed, scales, zeros, group_size, *, block_n=None, block_k=None, split_k=None,
                 num_warps=4):
    """x @ dequantize_int4(unpack_int4(packed), scales, zeros, group_size).T, fused.

    x: (M, K) float32, float16 or bfloat16. packed: uint8 (N, K // 2), input column 2j in
    the low nibble. scales, zeros: (N, K // group_size), any float dtype (zeros also uint8).
    Returns (M, N) in x's dtype. The keyword arguments are tuning knobs; the grader never
    passes them."""
    if is_stub(w4a16_kernel):  # inside @triton.jit a `raise` is a GPU compile error: say it here
        raise NotImplementedError("w4a16_kernel is still the stub: write it first (exercise 5)")
    M, K = x.shape
    N = packed.shape[0]
    if packed.dtype != torch.uint8 or packed.shape[1] * 2 != K:
        raise ValueError(f"packed must be uint8 (N, K // 2) = (N, {K // 2}), got {packed.dtype} {tuple(packed.shape)}")
    if group_size % 32 or K % group_size or scales.shape != (N, K // group_size) or zeros.shape != scales.shape:
        raise ValueError(f"need a group_size that is a multiple of 32 and divides K = {K}, and scales and zeros "
                         f"of shape (N, K // group_size) = ({N}, {K // group_size}); got group_size {group_size}, "
                         f"{tuple(scales.shape)} and {tuple(zeros.shape)}")
    out_dtype = x.dtype
    if not x.is_cuda and x.dtype == torch.bfloat16:
        x = x.float()  # Triton's CPU interpreter multiplies bf16 in tl.dot as raw bits: fp32 there
    x, packed, scales, zeros = x.contiguous(), packed.contiguous(), scales.contiguous(), zeros.contiguous()
    # Tiles, from first principles (measure them with `make gpu-check`). A step reads
    # block_n * block_k / 2 bytes of codes: 4 KiB at 64 x 128. At batch 1 the kernel is a
    # stream of weight bytes, so what matters is enough programs in flight on every SM.
    block_m = 1 if M == 1 else 16 if M <= 16 else 32  # 16: the fewest rows tl.dot takes
    block_k = block_k or min(group_size & -group_size, 128)  # a power of two that divides group_size
    block_n = block_n or (64 if M <= 16 else 128)
    grid_n, grid_m = triton.cdiv(N, block_n), triton.cdiv(M, block_m)
    if split_k is None:  # split K until about 4 programs per SM, each part >= 8 steps long
        sms = torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else 4
        split_k = 1
        while grid_n * grid_m * split_k < 4 * sms and K // (2 * split_k) >= 8 * block_k:
            split_k *= 2
    k_per_split = triton.cdiv(triton.cdiv(K, split_k), block_k) * block_k  # whole steps
    split_k = triton.cdiv(K, k_per_split)
    partial = torch.empty(split_k, M, N, dtype=torch.float32, device=x.device)
    w4a16_kernel[(grid_n, split_k, grid_m)](
        x, packed, scales, zeros, partial, M, N, K, group_size, k_per_split,
        x.stride(0), packed.stride(0), scales.stride(0), zeros.stride(0),
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=num_warps)
    return partial[0].to(out_dtype)  # negative control: the other K parts are never added
