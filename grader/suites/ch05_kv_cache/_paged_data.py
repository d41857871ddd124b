"""Shared by the paged-attention suites: random paged layouts and the dense oracle."""
import torch
import torch.nn.functional as F


def random_layout(gen, B, H, H_kv, D, block_size, max_len, num_blocks=None, dtype=torch.float32,
                  full=False):
    """Random lengths (last blocks partly filled), shuffled non-contiguous blocks, -1 padding."""
    lens = torch.full((B,), max_len) if full else torch.randint(1, max_len + 1, (B,), generator=gen)
    blocks_per_seq = [-(-int(n) // block_size) for n in lens]
    max_blocks = max(blocks_per_seq)
    num_blocks = num_blocks or sum(blocks_per_seq) + 3
    order = torch.randperm(num_blocks, generator=gen).tolist()
    tables = torch.full((B, max_blocks), -1, dtype=torch.long)
    for b, n in enumerate(blocks_per_seq):
        tables[b, :n] = torch.tensor([order.pop() for _ in range(n)])
    key_cache = torch.randn(num_blocks, block_size, H_kv, D, generator=gen).to(dtype)
    value_cache = torch.randn(num_blocks, block_size, H_kv, D, generator=gen).to(dtype)
    query = torch.randn(B, H, D, generator=gen).to(dtype)
    return query, key_cache, value_cache, tables, lens


def dense_oracle(query, key_cache, value_cache, tables, lens):
    """Gather each sequence in the judge, then sdpa: (B, H, D)."""
    out = []
    for b in range(len(lens)):
        blocks = tables[b][tables[b] >= 0]
        k = key_cache[blocks].flatten(0, 1)[: lens[b]].float()  # (T, H_kv, D)
        v = value_cache[blocks].flatten(0, 1)[: lens[b]].float()
        group = query.shape[1] // k.shape[1]
        k = k.permute(1, 0, 2).repeat_interleave(group, 0)
        v = v.permute(1, 0, 2).repeat_interleave(group, 0)
        out.append(F.scaled_dot_product_attention(query[b].float()[:, None], k, v)[:, 0])
    return torch.stack(out)


def check(got, want, what, atol=1e-4):
    assert isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(want.shape), (
        f"{what}: return (B, H, D) = {tuple(want.shape)}, got "
        f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}")
    err = (got.float() - want).abs().max()
    assert err < atol, (
        f"{what}: max error {err:.3g} against dense attention on the same keys and values "
        f"(check the block-table gather, the length mask of the last block and the GQA mapping)")
