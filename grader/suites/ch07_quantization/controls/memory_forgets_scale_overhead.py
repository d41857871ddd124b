"""Negative control: weight memory counts the 4-bit codes only, not the scale (and zero-point)
of each group, and GPUs are counted with round() instead of rounding up."""
# targets: memory


def serving_memory_gb(n_params, bits_per_weight, group_size, n_layers, n_kv_heads, head_dim,
                      kv_tokens, step_tokens, hidden_size, intermediate_size,
                      kv_bytes_per_element=2, activation_bytes_per_element=2,
                      scale_bytes=2, zero_bytes=0):  # negative control
    weights = n_params * bits_per_weight / 8  # BUG: no per-group scales
    kv_cache = 2 * n_layers * n_kv_heads * head_dim * kv_tokens * kv_bytes_per_element
    activations = step_tokens * (hidden_size + 2 * intermediate_size) * activation_bytes_per_element
    parts = {"weights": weights, "kv_cache": kv_cache, "activations": activations}
    parts["total"] = weights + kv_cache + activations
    return {name: value / 1e9 for name, value in parts.items()}


def gpus_needed(total_gb, gpu_memory_gb=141.0, usable_fraction=0.9):  # negative control
    return round(total_gb / (gpu_memory_gb * usable_fraction))  # BUG: a GPU is whole
