"""Negative control: symmetric INT4 clamped to [-8, 8] with scale max|w| / 8: code 8 + 8 = 16
does not fit in four bits (and the scales are not the specified ones)."""
# targets: int_formats


def quantize_int4(w, group_size=128, symmetric=True):  # negative control
    check_weight(w, group_size)
    out_features, in_features = w.shape
    groups = w.float().reshape(out_features, in_features // group_size, group_size)
    if symmetric:
        absmax = groups.abs().amax(dim=-1)
        scales = torch.where(absmax > 0, absmax / 8, torch.ones_like(absmax))  # BUG
        zeros = torch.full_like(scales, 8.0)
        codes = (torch.round(groups / scales[..., None]).clamp(-8, 8) + 8).to(torch.uint8)  # BUG: 16
        return codes.reshape(out_features, in_features), scales, zeros
    lo, hi = groups.amin(dim=-1).clamp(max=0), groups.amax(dim=-1).clamp(min=0)
    scales = torch.where(hi > lo, (hi - lo) / 15, torch.ones_like(lo))
    zeros = torch.round(-lo / scales).clamp(0, 15)
    codes = (torch.round(groups / scales[..., None]) + zeros[..., None]).clamp(0, 15).to(torch.uint8)
    return codes.reshape(out_features, in_features), scales, zeros
