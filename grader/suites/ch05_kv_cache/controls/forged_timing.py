"""Negative control (red team): a slow paged attention that tries to steer its timing from
inside its own process: it slows down dense attention, as if the baseline ran there, and
stops the process's clocks. The baseline runs in another worker and the judge holds the
clock, so it fails the performance check only."""
# targets: paged_attention
import time

import torch.nn.functional

_honest_paged_attention = paged_attention  # noqa: F821 (the notebook's own, defined above)
_dense_attention = torch.nn.functional.scaled_dot_product_attention


def paged_attention(query, key_cache, value_cache, block_tables, context_lens):  # negative control
    for _ in range(60):  # sixty times the work of the honest version
        _honest_paged_attention(query, key_cache, value_cache, block_tables, context_lens)
    return _honest_paged_attention(query, key_cache, value_cache, block_tables, context_lens)


def _slowed_dense_attention(*args, **kwargs):
    time.sleep(0.05)
    return _dense_attention(*args, **kwargs)


torch.nn.functional.scaled_dot_product_attention = _slowed_dense_attention
time.perf_counter = time.monotonic = time.time = lambda: 0.0
