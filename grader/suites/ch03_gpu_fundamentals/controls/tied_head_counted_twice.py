"""Negative control: counts an LM head of vocab x hidden parameters even when it is tied to the embedding."""
# targets: serving_memory

_parameter_count_untied = parameter_count


def parameter_count(config):  # negative control
    return _parameter_count_untied({**config, "tie_word_embeddings": False})  # BUG: tied heads counted twice
