"""Negative control: AWQ scales the weights' input channels but never divides what feeds them (no fold)."""
# targets: awq


def awq_fold(engine, calibration, group_size=128, grid=20):  # negative control
    w = engine.weights
    inputs = linear_inputs(engine, calibration)
    heads_per_kv, head_dim = w.n_heads // w.n_kv_heads, w.head_dim
    layers, alphas = [], {}
    for i, layer in enumerate(w.layers):
        qkv, o, gate_up, down = layer.qkv_t.T, layer.o_t.T, layer.gate_up_t.T, layer.down_t.T
        s_qkv, alphas[f"layers.{i}.qkv"], _ = awq_search_scales(qkv, inputs[f"layers.{i}.qkv"], group_size, grid)
        s_o, alphas[f"layers.{i}.o"], _ = awq_search_scales(o, inputs[f"layers.{i}.o"], group_size, grid,
                                                            heads_per_kv=heads_per_kv, head_dim=head_dim)
        s_gu, alphas[f"layers.{i}.gate_up"], _ = awq_search_scales(gate_up, inputs[f"layers.{i}.gate_up"], group_size, grid)
        s_down, alphas[f"layers.{i}.down"], _ = awq_search_scales(down, inputs[f"layers.{i}.down"], group_size, grid)
        qkv = qkv * s_qkv  # BUG: the RMSNorm weight is not divided by s_qkv, nor v's rows by s_o, ...
        n_q, n_kv = w.n_heads * head_dim, w.n_kv_heads * head_dim
        n_inter = gate_up.shape[0] // 2
        gate_up = gate_up * s_gu
        layers.append(dataclasses.replace(
            layer, q_proj=qkv[:n_q], k_proj=qkv[n_q:n_q + n_kv], v_proj=qkv[n_q + n_kv:], o_proj=o * s_o,
            gate_proj=gate_up[:n_inter], up_proj=gate_up[n_inter:], down_proj=down * s_down))
    return with_weights(engine, dataclasses.replace(w, layers=tuple(layers))), alphas
