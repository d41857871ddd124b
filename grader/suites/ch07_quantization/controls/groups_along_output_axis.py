"""Negative control: INT4 groups run along the OUTPUT axis (group_size consecutive rows of one
input column), reshaped to the expected (out, in // group_size) shape when the matrix allows."""
# targets: int_formats


def quantize_int4(w, group_size=128, symmetric=True):  # negative control
    check_weight(w, group_size)
    if w.shape[0] % group_size:  # cannot group the rows: fall back to the right axis
        codes, scales, zeros = _right_quantize_int4(w, group_size, symmetric)
        return codes, scales, zeros
    codes, scales, zeros = _right_quantize_int4(w.T.contiguous(), group_size, symmetric)  # BUG: wrong axis
    return codes.T.contiguous(), scales.T.reshape(w.shape[0], -1)[:, : w.shape[1] // group_size].contiguous(), \
        zeros.T.reshape(w.shape[0], -1)[:, : w.shape[1] // group_size].contiguous()


def _right_quantize_int4(w, group_size, symmetric):
    out_features, in_features = w.shape
    groups = w.float().reshape(out_features, in_features // group_size, group_size)
    if symmetric:
        absmax = groups.abs().amax(dim=-1)
        scales = torch.where(absmax > 0, absmax / 7, torch.ones_like(absmax))
        zeros = torch.full_like(scales, 8.0)
        q = torch.round(groups / scales[..., None]).clamp(-7, 7)
    else:
        lo, hi = groups.amin(dim=-1).clamp(max=0), groups.amax(dim=-1).clamp(min=0)
        scales = torch.where(hi > lo, (hi - lo) / 15, torch.ones_like(lo))
        zeros = torch.round(-lo / scales).clamp(0, 15)
        q = torch.round(groups / scales[..., None])
    codes = (q + zeros[..., None]).clamp(0, 15).to(torch.uint8)
    return codes.reshape(out_features, in_features), scales, zeros
