"""Negative control, GPU only (its failure can be proven only on a GPU: tools/gpu_check.py
grades it; tests/grader/test_controls.py does not collect this folder): correct, but the
design the reference replaced. One program per (sequence, query head) walks the whole
context one block at a time, so each KV head's keys and values are read once per query head
of its group, and at batch 8 the grid is too small for the GPU. Fails the bandwidth test only."""
# targets: paged_attention_triton


@triton.jit
def one_query_head_kernel(query_ptr, key_ptr, value_ptr, table_ptr, lens_ptr, out_ptr,
                          scale, max_blocks, n_heads, group_size,
                          stride_block, stride_slot, stride_head,
                          BLOCK_SIZE: tl.constexpr, HEAD_DIM: tl.constexpr):
    seq = tl.program_id(0)
    head = tl.program_id(1)
    kv_head = head // group_size
    dims = tl.arange(0, HEAD_DIM)
    slots = tl.arange(0, BLOCK_SIZE)
    q = tl.load(query_ptr + (seq * n_heads + head) * HEAD_DIM + dims).to(tl.float32)
    length = tl.load(lens_ptr + seq)
    running_max = tl.max(tl.full([BLOCK_SIZE], float("-inf"), tl.float32), axis=0)
    normaliser = tl.sum(tl.zeros([BLOCK_SIZE], tl.float32), axis=0)
    acc = tl.zeros([HEAD_DIM], tl.float32)
    for index in range(0, tl.cdiv(length, BLOCK_SIZE)):
        block = tl.load(table_ptr + seq * max_blocks + index).to(tl.int64)
        offsets = (block * stride_block + slots[:, None] * stride_slot + kv_head * stride_head
                   + dims[None, :])  # (BLOCK_SIZE, HEAD_DIM)
        valid = index * BLOCK_SIZE + slots < length
        k = tl.load(key_ptr + offsets, mask=valid[:, None], other=0.0).to(tl.float32)
        scores = tl.where(valid, tl.sum(k * q[None, :], axis=1) * scale, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, axis=0))
        p = tl.exp(scores - new_max)
        rescale = tl.exp(running_max - new_max)
        v = tl.load(value_ptr + offsets, mask=valid[:, None], other=0.0).to(tl.float32)
        acc = acc * rescale + tl.sum(p[:, None] * v, axis=0)
        normaliser = normaliser * rescale + tl.sum(p, axis=0)
        running_max = new_max
    tl.store(out_ptr + (seq * n_heads + head) * HEAD_DIM + dims, acc / normaliser)


def paged_attention_triton(query, key_cache, value_cache, block_tables, context_lens):  # negative control
    batch, n_heads, head_dim = query.shape
    query, block_tables = query.contiguous(), block_tables.contiguous()
    out = torch.empty(batch, n_heads, head_dim, dtype=torch.float32, device=query.device)
    one_query_head_kernel[(batch, n_heads)](
        query, key_cache, value_cache, block_tables, context_lens, out,
        head_dim ** -0.5, block_tables.shape[1], n_heads, n_heads // key_cache.shape[2],
        key_cache.stride(0), key_cache.stride(1), key_cache.stride(2),
        BLOCK_SIZE=key_cache.shape[1], HEAD_DIM=head_dim)
    return out.to(query.dtype)
