"""Negative control: MLA counted like K and V (twice the latent), and capacity counted in
tokens instead of whole blocks."""
# targets: kv_sizing


def mla_kv_bytes_per_token(n_layers, latent_dim, rope_dim, bytes_per_element=2):  # negative control
    return 2 * n_layers * (latent_dim + rope_dim) * bytes_per_element  # BUG: the latent is not a K and a V


def max_concurrent_sequences(hardware, model, context_len, block_size=16, memory_fraction=0.9,
                             other_bytes=0.0):  # negative control
    budget = hardware.memory_bytes * memory_fraction - model.weight_bytes - other_bytes
    return max(0, int(budget // (context_len * model.kv_bytes_per_token)))  # BUG: tokens, not blocks
