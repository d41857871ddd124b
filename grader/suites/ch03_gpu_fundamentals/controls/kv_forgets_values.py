"""Negative control: KV bytes per token count the keys only (no factor 2 for the values)."""
# targets: serving_memory::test_kv_bytes_per_token


def kv_bytes_per_token(config, bytes_per_element=2):  # negative control
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    return config["num_hidden_layers"] * config["num_key_value_heads"] * head_dim * bytes_per_element  # BUG
