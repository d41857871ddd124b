"""Negative control: a step reads the weights once per sequence of the batch, not once per step."""
# targets: step_cost

_step_cost_shared = step_cost


def step_cost(config, batch, new_tokens, context, weight_bytes=4, kv_bytes=4):  # negative control
    flops, moved = _step_cost_shared(config, batch, new_tokens, context, weight_bytes, kv_bytes)
    _, weights = _step_cost_shared(config, 1, 0, 0, weight_bytes, kv_bytes)  # weights alone
    return flops, moved + (batch - 1) * weights  # BUG: batching shares nothing
