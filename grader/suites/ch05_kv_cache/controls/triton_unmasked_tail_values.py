"""Negative control: the reference Triton kernel with the keys and values of slots past the
context length loaded unmasked (their scores are still masked). Right on finite data, wrong
(NaN) as soon as an unused slot holds NaN: fails the NaN test only."""
# targets: paged_attention_triton


@triton.jit
def paged_attention_partition_kernel(
        query_ptr, key_ptr, value_ptr, table_ptr, lens_ptr,  # the inputs, as in paged_attention
        part_out_ptr, part_max_ptr, part_sum_ptr,  # (B, H, n_partitions, D), (B, H, n_partitions) x 2
        scale, n_heads, group_size, max_blocks, partition_size, n_partitions,
        stride_block, stride_slot, stride_head,
        BLOCK_SIZE: tl.constexpr, HEAD_DIM: tl.constexpr, TILE: tl.constexpr,
        GROUP_PAD: tl.constexpr, DIM_PAD: tl.constexpr):
    """The reference partition kernel, except that keys and values are loaded unmasked."""
    seq, kv_head, partition = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    length = tl.load(lens_ptr + seq)
    start = partition * partition_size
    if start >= length:  # a shorter sequence than the longest: nothing to read here
        return
    end = tl.minimum(start + partition_size, length)

    rows = tl.arange(0, GROUP_PAD)  # the query heads of this KV head, padded to tl.dot's 16 rows
    dims = tl.arange(0, DIM_PAD)  # head_dim, padded to a power of two (>= 16)
    row_ok, dim_ok = rows < group_size, dims < HEAD_DIM
    heads = kv_head * group_size + rows  # (GROUP_PAD,) query head numbers
    q = tl.load(query_ptr + (seq * n_heads + heads)[:, None] * HEAD_DIM + dims[None, :],
                mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
    q = q.to(key_ptr.dtype.element_ty)  # (GROUP_PAD, DIM_PAD); tl.dot wants one dtype

    running_max = tl.full([GROUP_PAD], float("-inf"), tl.float32)
    normaliser = tl.zeros([GROUP_PAD], tl.float32)
    acc = tl.zeros([GROUP_PAD, DIM_PAD], tl.float32)
    for tile_start in range(start, end, TILE):
        tokens = tile_start + tl.arange(0, TILE)  # (TILE,) positions in the sequence
        valid = tokens < end
        blocks = tl.load(table_ptr + seq * max_blocks + tokens // BLOCK_SIZE, mask=valid, other=0)
        rows_kv = blocks.to(tl.int64) * stride_block + (tokens % BLOCK_SIZE) * stride_slot + kv_head * stride_head
        offsets = rows_kv[:, None] + dims[None, :]  # (TILE, DIM_PAD)
        kv_mask = dim_ok[None, :]  # negative control: slots past the length are loaded as they are
        k = tl.load(key_ptr + offsets, mask=kv_mask, other=0.0)
        v = tl.load(value_ptr + offsets, mask=kv_mask, other=0.0)
        scores = tl.dot(q, tl.trans(k), input_precision="ieee") * scale  # (GROUP_PAD, TILE), fp32
        scores = tl.where(valid[None, :], scores, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, axis=1))  # finite: a tile has a valid token
        rescale = tl.exp(running_max - new_max)  # what the old terms are worth now
        p = tl.exp(scores - new_max[:, None])
        normaliser = normaliser * rescale + tl.sum(p, axis=1)
        acc = acc * rescale[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
        running_max = new_max

    slots = (seq * n_heads + heads) * n_partitions + partition  # (GROUP_PAD,)
    tl.store(part_out_ptr + slots[:, None] * HEAD_DIM + dims[None, :], acc / normaliser[:, None],
             mask=row_ok[:, None] & dim_ok[None, :])
    tl.store(part_max_ptr + slots, running_max, mask=row_ok)
    tl.store(part_sum_ptr + slots, normaliser, mask=row_ok)
