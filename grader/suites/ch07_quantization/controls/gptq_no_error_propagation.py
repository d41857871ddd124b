"""Negative control: GPTQ that rounds each column but never propagates its error (that is RTN)."""
# targets: gptq


def gptq_quantize_weight(weight, hessian, group_size=128, damp=0.01, block_size=32):  # negative control
    out_features, n = weight.shape
    codes = torch.zeros(out_features, n, dtype=torch.uint8)
    scales = torch.zeros(out_features, n // group_size)
    for column in range(n):
        if column % group_size == 0:
            scale = fp16_scales(weight[:, column:column + group_size].abs().amax(dim=1).float())
            scales[:, column // group_size] = scale
        q = torch.round(weight[:, column] / scale).clamp(-7, 7)  # BUG: no compensation of the error
        codes[:, column] = (q + 8).to(torch.uint8)
    return codes, scales, torch.full_like(scales, 8.0)
