"""What the AWQ, GPTQ and QAT suites share: the judge's calibration and held-out slices,
its own RTN and fake quantizer, and the rebuilding of a student's quantized engine from
raw tensors (packed codes, float16 scales, zero-points, norms), validated one by one.
Every number these suites score is computed here, in the judge, from those tensors."""
import dataclasses
import functools

import torch

from grader.suites.ch07_quantization._course import LINEARS, dequantized, fetch_int4_layer, judge_engine
from grader.suites.ch07_quantization._formats import check_tensor, judge_int4

CALIBRATION_TOKENS = 512  # 2 windows of 256 from the train split: small, and enough to rank methods
HELDOUT_TOKENS = 1024


@functools.lru_cache(maxsize=2)
def judge_calibration(n_tokens: int = CALIBRATION_TOKENS, window: int = 256, seed: int = 0) -> torch.Tensor:
    from llmopt.quality import calibration_tokens

    return calibration_tokens(n_tokens, window=window, seed=seed)


@functools.lru_cache(maxsize=1)
def judge_heldout() -> torch.Tensor:
    from llmopt.quality import heldout_tokens

    return heldout_tokens(HELDOUT_TOKENS)


def kl_from_fp32(weights_by_name: dict, norms: dict | None = None) -> float:
    """KL(FP32 || model) on the judge's held-out slice, the model being the course model
    with these (out, in) block weights (and, for AWQ, these norm weights)."""
    from llmopt.engine import Engine
    from llmopt.quality import kl_divergence

    engine = judge_engine()
    return kl_divergence(Engine(rebuilt_weights(weights_by_name, norms)), engine, judge_heldout())


def rebuilt_weights(weights_by_name: dict, norms: dict | None = None):
    base = judge_engine().weights
    layers = base.layers
    if norms:
        layers = tuple(dataclasses.replace(layer, attention_norm=norms[i][0], mlp_norm=norms[i][1])
                       for i, layer in enumerate(layers))
    base = dataclasses.replace(base, layers=layers)
    return base.map_linears(lambda name, w: weights_by_name[name])


def judge_rtn(group_size: int) -> dict:
    """The judge's RTN (symmetric, float16 scales, as Int4Linear stores them): name -> weight."""
    out = {}

    def quantize(name, w):
        codes, scales, zeros = judge_int4(w, group_size, symmetric=True)
        out[name] = dequantized(codes[:, 0::2] | (codes[:, 1::2] << 4), scales.half(), zeros, group_size)
        return w

    judge_engine().weights.map_linears(quantize)
    return out


def judge_fake_quant(w: torch.Tensor, group_size: int) -> torch.Tensor:
    """Symmetric INT4 in [-7, 7], groups of group_size inputs, scales absmax / 7 rounded to float16."""
    out_features, in_features = w.shape
    groups = w.double().reshape(out_features, in_features // group_size, group_size)
    absmax = groups.abs().amax(-1)
    scales = torch.where(absmax > 0, absmax / 7, torch.ones_like(absmax)).half().double()
    q = torch.round(groups / scales[..., None]).clamp(-7, 7)
    return (q * scales[..., None]).reshape(out_features, in_features).float()


def engine_weights(engine) -> dict:
    """name -> (out, in) weight of a trusted (judge-side) engine's full-precision block linears."""
    out = {}
    engine.weights.map_linears(lambda name, w: out.setdefault(name, w))
    return out


def reference_int4_weights(engine) -> dict:
    """name -> dequantized weight of a trusted engine of Int4Linear layers (the reference's)."""
    out = {}
    for index, layer in enumerate(engine.weights.layers):
        for name, attribute in LINEARS:
            w4a16 = getattr(layer, attribute)
            out[f"layers.{index}.{name}"] = dequantized(w4a16.packed, w4a16.scales, w4a16.zeros,
                                                        w4a16.group_size)
    return out


def fetch_quantized_model(quantized, group_size: int, what: str, with_norms: bool):
    """A student's quantized engine (a handle), validated against the judge's course model:
    every block linear a symmetric W4A16 layer of this group size (zeros 8), the embedding,
    final norm and LM head untouched; with_norms: the per-layer norm weights it carries
    (AWQ folds its scales there), else they must be untouched too.
    Returns ({name: dequantized (out, in) weight}, {layer: (attention_norm, mlp_norm)} or None)."""
    engine = judge_engine()
    layers = quantized.weights.layers.value()
    assert isinstance(layers, tuple) and len(layers) == len(engine.weights.layers), (
        f"{what}: the quantized engine must keep the {len(engine.weights.layers)} layers")
    weights, norms = {}, {}
    for index, (layer, judge_layer) in enumerate(zip(layers, engine.weights.layers)):
        for name, attribute in LINEARS:
            shape = tuple(getattr(judge_layer, attribute).T.shape)  # (out, in)
            where = f"{what}: layers.{index}.{name}"
            packed, scales, zeros, g = fetch_int4_layer(getattr(layer, attribute), *shape, where)
            assert g == group_size, f"{where}: group_size must be {group_size}, got {g}"
            assert (zeros.float() == 8).all(), (
                f"{where}: zero-points must all be 8 (symmetric INT4, the format RTN is compared in)")
            weights[f"layers.{index}.{name}"] = dequantized(packed, scales, zeros, g)
        norms[index] = fetch_norms(layer, judge_layer, f"{what}: layers.{index}", with_norms)
    for field in ("embed_tokens", "lm_head", "final_norm"):
        assert torch.equal(getattr(quantized.weights, field).value(), getattr(engine.weights, field)), (
            f"{what}: weights.{field} must stay the full-precision tensor")
    return weights, (norms if with_norms else None)


def fetch_norms(layer, judge_layer, where: str, changed: bool) -> tuple:
    """A student's layer's two RMSNorm weights, validated: finite float32 of the right
    shape, and equal to the judge's unless the method folds scales into them (`changed`)."""
    pair = []
    for field in ("attention_norm", "mlp_norm"):
        judge_norm = getattr(judge_layer, field)
        norm = check_tensor(getattr(layer, field).value(), f"{where}.{field}",
                            tuple(judge_norm.shape), (torch.float32,))
        assert torch.isfinite(norm).all(), f"{where}.{field} must be finite"
        if not changed:
            assert torch.equal(norm, judge_norm), f"{where}.{field} must stay unchanged"
        pair.append(norm)
    return tuple(pair)


def fetch_full_precision_model(model, what: str, with_norms: bool):
    """A student's engine whose block linears are full-precision Tensors (AWQ's folded
    model, QAT's latent weights): ({name: (out, in) weight}, norms or None), validated."""
    engine = judge_engine()
    layers = model.weights.layers.value()
    assert isinstance(layers, tuple) and len(layers) == len(engine.weights.layers), (
        f"{what}: the engine must keep the {len(engine.weights.layers)} layers")
    weights, norms = {}, {}
    for index, (layer, judge_layer) in enumerate(zip(layers, engine.weights.layers)):
        for name, attribute in LINEARS:
            stored = getattr(judge_layer, attribute)  # (in, out)
            value = check_tensor(getattr(layer, attribute).value(), f"{what}: layers.{index}.{attribute}",
                                 tuple(stored.shape), (torch.float32,))
            assert torch.isfinite(value).all(), f"{what}: layers.{index}.{attribute} must be finite"
            weights[f"layers.{index}.{name}"] = value.T.contiguous()
        norms[index] = fetch_norms(layer, judge_layer, f"{what}: layers.{index}", with_norms)
        for bias in ("q_bias", "k_bias", "v_bias"):
            assert getattr(layer, bias).value() is None, f"{what}: the course model has no {bias}"
    for field in ("embed_tokens", "lm_head", "final_norm"):
        assert torch.equal(getattr(model.weights, field).value(), getattr(engine.weights, field)), (
            f"{what}: weights.{field} must stay the full-precision tensor")
    return weights, (norms if with_norms else None)
