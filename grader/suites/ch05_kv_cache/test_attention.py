"""Exercise 1: attention from scratch, against torch's scaled_dot_product_attention."""
import pytest
import torch
import torch.nn.functional as F

NO_TOKEN = -1
SHAPES = [  # (B, H, H_kv, D)
    (2, 8, 2, 16), (1, 4, 4, 8), (3, 6, 1, 32), (2, 12, 3, 16)]


def oracle(query, keys, values, query_positions, key_positions):
    """sdpa with the mask built from positions in the judge; GQA by repeat_interleave."""
    group = query.shape[1] // keys.shape[1]
    k = keys.repeat_interleave(group, dim=1)
    v = values.repeat_interleave(group, dim=1)
    visible = ((key_positions[:, None, :] >= 0)
               & (key_positions[:, None, :] <= query_positions[:, :, None]))  # (B, T_q, T_k)
    return F.scaled_dot_product_attention(query, k, v, attn_mask=visible[:, None]), visible


def check(student, gen, B, H, H_kv, D, T_q, T_k, query_positions, key_positions, what):
    q = torch.randn(B, H, T_q, D, generator=gen)
    k = torch.randn(B, H_kv, T_k, D, generator=gen)
    v = torch.randn(B, H_kv, T_k, D, generator=gen)
    want, visible = oracle(q, k, v, query_positions, key_positions)
    got = student.attention(q, k, v, query_positions.clone(), key_positions.clone())
    assert isinstance(got, torch.Tensor) and tuple(got.shape) == (B, H, T_q, D), (
        f"{what}: return a tensor of shape (B, H, T_q, D) = {(B, H, T_q, D)}, got "
        f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
    assert torch.isfinite(got).all(), f"{what}: the output holds NaN or inf"
    rows = visible.any(-1)  # (B, T_q): queries that see at least one key
    diff = (got - want).abs().permute(0, 2, 1, 3)[rows]
    assert diff.numel() == 0 or diff.max() < 1e-4, (
        f"{what} (B={B}, H={H}, H_kv={H_kv}, D={D}, T_q={T_q}, T_k={T_k}): max error "
        f"{diff.max():.3g} against scaled_dot_product_attention")


@pytest.mark.points(2)
def test_prefill_matches_sdpa(student):
    """prefill (T_q == T_k, causal) matches sdpa for several GQA groupings"""
    gen = torch.Generator().manual_seed(501)
    for B, H, H_kv, D in SHAPES:
        T = int(torch.randint(1, 24, (1,), generator=gen))
        pos = torch.arange(T).expand(B, T)
        check(student, gen, B, H, H_kv, D, T, T, pos, pos, "prefill")


@pytest.mark.points(2)
def test_decode_with_offset_mask(student):
    """a query shorter than the keys (decode, chunked prefill) sees every earlier key"""
    gen = torch.Generator().manual_seed(502)
    for B, H, H_kv, D in SHAPES:
        for T_q in (1, 3):
            T_k = int(torch.randint(T_q + 1, 40, (1,), generator=gen))
            key_pos = torch.arange(T_k).expand(B, T_k)
            check(student, gen, B, H, H_kv, D, T_q, T_k, key_pos[:, -T_q:], key_pos,
                  f"{T_q} query token(s) after {T_k - T_q} cached ones")


@pytest.mark.points(1)
def test_left_padding_and_empty_slots(student):
    """keys at NO_TOKEN (-1) are never seen; rows are left-padded differently"""
    gen = torch.Generator().manual_seed(503)
    B, H, H_kv, D, T = 3, 8, 2, 16, 12
    pads = [0, 3, 7]
    pos = torch.stack([torch.cat([torch.full((p,), NO_TOKEN), torch.arange(T - p)]) for p in pads])
    check(student, gen, B, H, H_kv, D, T, T, pos, pos, "left-padded prefill")
    check(student, gen, B, H, H_kv, D, 1, T, pos[:, -1:], pos, "left-padded decode step")


def test_fresh_inputs_every_call(student):
    """repeated calls with the same shapes and new values give new, right answers"""
    gen = torch.Generator().manual_seed(504)
    pos = torch.arange(9).expand(2, 9)
    for _ in range(3):
        check(student, gen, 2, 4, 2, 8, 9, 9, pos, pos, "a repeated call")


def test_keeps_the_query_dtype(student):
    """float64 in, float64 out"""
    q, k, v = torch.randn(1, 4, 5, 8, dtype=torch.float64), torch.randn(1, 2, 5, 8, dtype=torch.float64), \
        torch.randn(1, 2, 5, 8, dtype=torch.float64)
    pos = torch.arange(5)[None]
    got = student.attention(q, k, v, pos, pos.clone())
    assert got.dtype == torch.float64, f"return the query's dtype (float64), got {got.dtype}"
