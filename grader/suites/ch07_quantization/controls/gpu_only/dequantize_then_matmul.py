"""Negative control, GPU only (its failure can be proven only on a GPU: tools/gpu_check.py
grades it; tests/grader/test_controls.py does not collect this folder): correct, but not
fused. It unpacks and dequantizes the whole weight in PyTorch, writes it to memory in x's
dtype and reads it back for the matmul, the path Int4Linear takes without a kernel: several
times the bytes of the packed layer at batch 1. Fails the speed test only."""
# targets: w4a16_triton


def w4a16_matmul(x, packed, scales, zeros, group_size, **knobs):
    codes = torch.stack([packed & 0xF, packed >> 4], dim=-1).flatten(1)  # (N, K) uint8
    grouped = codes.unflatten(1, (-1, group_size)).to(x.dtype)
    weight = ((grouped - zeros.to(x.dtype)[..., None]) * scales.to(x.dtype)[..., None]).flatten(1)
    return (x.float() @ weight.float().T).to(x.dtype) if x.dtype == torch.float32 else x @ weight.T
