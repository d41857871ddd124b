"""Negative control: max_batch fills the whole card, ignoring the usable fraction."""
# targets: serving_memory::test_max_batch

_max_batch_usable = max_batch


def max_batch(config, gpu_bytes, context, usable=0.9, **formats):  # negative control
    return _max_batch_usable(config, gpu_bytes, context, 1.0, **formats)  # BUG: usable ignored
