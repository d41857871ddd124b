"""Negative control: the reference W4A16 kernel with the two nibbles of each byte swapped
(input column 2j read from the high nibble, as in a packing convention that puts the first
column on top). Every output is wrong unless the codes happen to be equal in their pairs:
fails every correctness test of the kernel."""
# targets: w4a16_triton


@triton.jit
def w4a16_kernel(
        x_ptr, packed_ptr, scales_ptr, zeros_ptr, partial_ptr,  # x (M, K); packed (N, K // 2); scales, zeros (N, K // g); partial (SPLIT_K, M, N) fp32
        M, N, K, group_size, k_per_split,
        stride_xm, stride_pn, stride_sn, stride_zn,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """One program: rows [program_id(2) * BLOCK_M, +BLOCK_M) of x, outputs (rows of W)
    [program_id(0) * BLOCK_N, +BLOCK_N), input columns [program_id(1) * k_per_split,
    +k_per_split). Writes x[rows, those columns] @ dequant(W)[outputs, those columns].T in
    float32 to partial[program_id(1), rows, outputs]. BLOCK_K divides group_size, and
    k_per_split is a multiple of BLOCK_K: a step of BLOCK_K columns lies in one group."""
    pid_n, pid_k, pid_m = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,) rows of x and of the output
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)  # (BLOCK_N,) outputs = rows of W
    pairs = tl.arange(0, BLOCK_K // 2)  # byte j of a step: input columns 2j (low nibble), 2j + 1 (high)
    row_ok, col_ok = rows < M, cols < N
    x_rows = x_ptr + rows.to(tl.int64)[:, None] * stride_xm  # (BLOCK_M, 1)
    w_rows = packed_ptr + cols.to(tl.int64)[:, None] * stride_pn  # (BLOCK_N, 1)

    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    k_start = pid_k * k_per_split
    for k in range(k_start, tl.minimum(k_start + k_per_split, K), BLOCK_K):
        x = tl.load(x_rows + k + tl.arange(0, BLOCK_K)[None, :], mask=row_ok[:, None], other=0.0)  # (BLOCK_M, BLOCK_K)
        x_even, x_odd = tl.split(tl.reshape(x, [BLOCK_M, BLOCK_K // 2, 2]))  # columns 2j, 2j + 1
        byte = tl.load(w_rows + k // 2 + pairs[None, :], mask=col_ok[:, None], other=0)  # (BLOCK_N, BLOCK_K // 2) uint8
        # Inside one group sum_k x_k (c_k - z) s = s * (sum_k x_k c_k - z * sum_k x_k):
        # the codes c enter the product as they are; the zero and the scale come once per group.
        if BLOCK_M == 1:  # decode: a matrix-vector product, on the CUDA cores, in float32
            low = codes_as(byte >> 4, tl.float32)  # negative control: the HIGH nibble for the even columns
            high = codes_as(byte & 0xF, tl.float32)
            dot = tl.sum(low * x_even.to(tl.float32) + high * x_odd.to(tl.float32), axis=1)[None, :]
        else:  # a batch of rows: tensor cores; the codes 0..15 are exact in fp16 and bf16
            low = codes_as(byte >> 4, x_even.dtype)  # negative control: nibbles swapped here too
            high = codes_as(byte & 0xF, x_even.dtype)
            dot = tl.dot(x_even, tl.trans(low), input_precision="ieee") + \
                tl.dot(x_odd, tl.trans(high), input_precision="ieee")  # (BLOCK_M, BLOCK_N) fp32
        x_sum = tl.sum(x_even.to(tl.float32) + x_odd.to(tl.float32), axis=1)  # (BLOCK_M,)
        group = k // group_size
        scale = tl.load(scales_ptr + cols * stride_sn + group, mask=col_ok, other=0.0).to(tl.float32)
        zero = tl.load(zeros_ptr + cols * stride_zn + group, mask=col_ok, other=0).to(tl.float32)
        acc += (dot - x_sum[:, None] * zero[None, :]) * scale[None, :]

    tl.store(partial_ptr + pid_k * M * N + rows[:, None] * N + cols[None, :], acc,
             mask=row_ok[:, None] & col_ok[None, :])
