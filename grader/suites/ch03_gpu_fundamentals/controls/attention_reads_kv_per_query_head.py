"""Negative control: decode attention reads K and V once per query head, as if there were no GQA."""
# targets: roofline::test_decode_attention_cost


def decode_attention_cost(batch, context, n_heads, n_kv_heads, head_dim, bytes_per_element=2):  # negative control
    flops = 4.0 * batch * n_heads * context * head_dim
    elements = batch * (2 * n_heads * context * head_dim + 2 * n_heads * head_dim)  # BUG: n_heads, not n_kv_heads
    return flops, float(elements * bytes_per_element)
