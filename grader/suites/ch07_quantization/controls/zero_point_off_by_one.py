"""Negative control: the asymmetric zero-point is one too large (round(-lo / s) + 1), which
shifts every dequantized weight of the group by a whole step."""
# targets: int_formats


def quantize_int4(w, group_size=128, symmetric=True):  # negative control
    check_weight(w, group_size)
    out_features, in_features = w.shape
    groups = w.float().reshape(out_features, in_features // group_size, group_size)
    if symmetric:
        absmax = groups.abs().amax(dim=-1)
        scales = torch.where(absmax > 0, absmax / 7, torch.ones_like(absmax))
        zeros = torch.full_like(scales, 8.0)
        q = torch.round(groups / scales[..., None]).clamp(-7, 7)
        codes = (q + zeros[..., None]).clamp(0, 15).to(torch.uint8)
        return codes.reshape(out_features, in_features), scales, zeros
    lo, hi = groups.amin(dim=-1).clamp(max=0), groups.amax(dim=-1).clamp(min=0)
    scales = torch.where(hi > lo, (hi - lo) / 15, torch.ones_like(lo))
    zeros = (torch.round(-lo / scales) + 1).clamp(0, 15)  # BUG: off by one
    codes = (torch.round(groups / scales[..., None]) + torch.round(-lo / scales)[..., None]).clamp(0, 15)
    return codes.to(torch.uint8).reshape(out_features, in_features), scales, zeros
