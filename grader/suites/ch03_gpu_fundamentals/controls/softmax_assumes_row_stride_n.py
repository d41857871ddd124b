"""Negative control: the softmax launcher passes the row length as the row stride, so the rows of a slice
of a wider tensor are read from the wrong places (right only for contiguous inputs)."""
# targets: triton_softmax::test_softmax


def softmax_triton(x):  # negative control
    n_cols = x.shape[-1]
    rows = x.reshape(-1, n_cols)
    out = torch.empty(rows.shape, dtype=x.dtype, device=x.device)
    if rows.numel():
        softmax_kernel[(rows.shape[0],)](rows, out, n_cols, out.stride(0), n_cols,  # BUG: rows assumed n_cols apart
                                         BLOCK=triton.next_power_of_2(n_cols))
    return out.view(x.shape)
