"""Negative control: attention memoises its output by input shapes, returning stale results."""
# targets: attention
_reference_attention = attention
_memo = {}


def attention(query, keys, values, query_positions, key_positions):  # negative control
    key = (tuple(query.shape), tuple(keys.shape), query.dtype)  # BUG: the values are ignored
    if key not in _memo:
        _memo[key] = _reference_attention(query, keys, values, query_positions, key_positions)
    return _memo[key]
