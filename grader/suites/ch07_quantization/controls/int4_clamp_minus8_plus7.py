"""Negative control: symmetric INT4 on [-8, 7] with scale max|w| / 8, so the largest positive
weight of a group is clipped to 7 steps (an error of a whole step) and the scales are wrong."""
# targets: int_formats


def quantize_int4(w, group_size=128, symmetric=True):  # negative control
    check_weight(w, group_size)
    out_features, in_features = w.shape
    groups = w.float().reshape(out_features, in_features // group_size, group_size)
    if symmetric:
        absmax = groups.abs().amax(dim=-1)
        scales = torch.where(absmax > 0, absmax / 8, torch.ones_like(absmax))  # BUG: 8 levels each side
        zeros = torch.full_like(scales, 8.0)
        q = torch.round(groups / scales[..., None]).clamp(-8, 7)  # BUG: [-8, 7]
    else:
        lo, hi = groups.amin(dim=-1).clamp(max=0), groups.amax(dim=-1).clamp(min=0)
        scales = torch.where(hi > lo, (hi - lo) / 15, torch.ones_like(lo))
        zeros = torch.round(-lo / scales).clamp(0, 15)
        q = torch.round(groups / scales[..., None])
    codes = (q + zeros[..., None]).clamp(0, 15).to(torch.uint8)
    return codes.reshape(out_features, in_features), scales, zeros
