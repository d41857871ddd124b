"""Negative control (red team): a slow paged attention that remembers every answer it gave,
so that a benchmark repeating the same inputs would time mostly lookups. Every timed call
gets fresh inputs, so it fails the performance check only."""
# targets: paged_attention
_honest_paged_attention = paged_attention  # noqa: F821 (the notebook's own, defined above)
_answers = {}


def paged_attention(query, key_cache, value_cache, block_tables, context_lens):  # negative control
    key = tuple(t.numpy().tobytes() for t in (query, key_cache, value_cache, block_tables, context_lens))
    if key not in _answers:
        for _ in range(60):  # sixty times the work of the honest version, once per new input
            _honest_paged_attention(query, key_cache, value_cache, block_tables, context_lens)
        _answers[key] = _honest_paged_attention(query, key_cache, value_cache, block_tables, context_lens)
    return _answers[key]
