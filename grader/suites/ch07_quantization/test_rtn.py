"""Exercise 2: the W4A16 layer and round-to-nearest PTQ of the course model. The judge pulls
the packed codes, scales and zero-points out of the student's layers, dequantizes them
with its own code, rebuilds the model in the judge and measures it there."""
import pytest
import torch

from course_config import THRESHOLDS
from grader.suites.ch07_quantization._course import (
    LINEARS, dequantized, fetch_int4_layer, judge_engine, judge_tokens, nbytes, student_engine)
from grader.suites.ch07_quantization._formats import judge_int4, judge_pack

MIN_KL_RATIO = THRESHOLDS["ch07_quantization/rtn_kl_vs_reference"].minimum
MIN_COMPRESSION = THRESHOLDS["ch07_quantization/int4_compression_vs_fp32"].minimum
FP16_SCALE_SLACK = 0.01  # steps: float16 scales round by 2^-11 relative, times at most 15 codes


def layer_cases():
    generator = torch.Generator().manual_seed(720)
    for out_features, in_features, group_size, symmetric in [(48, 256, 128, True), (64, 128, 32, False),
                                                              (128, 128, 64, True), (24, 192, 64, False)]:
        yield torch.randn(out_features, in_features, generator=generator) * 0.05, group_size, symmetric


@pytest.mark.points(3)
def test_int4_linear(student):
    """Int4Linear.from_weight: packed uint8, float16 scales, zeros, bytes counted exactly, and
    y = x @ dequant(W).T in x's dtype"""
    generator = torch.Generator().manual_seed(721)
    for w, group_size, symmetric in layer_cases():
        out_features, in_features = w.shape
        what = f"Int4Linear.from_weight({out_features}x{in_features}, {group_size}, symmetric={symmetric})"
        layer = student.Int4Linear.from_weight(w, group_size, symmetric)
        packed, scales, zeros, g = fetch_int4_layer(layer, out_features, in_features, what)
        assert g == group_size, f"{what}: group_size must be {group_size}, got {g}"
        assert (layer.out_features.value(), layer.in_features.value()) == (out_features, in_features), (
            f"{what}: out_features and in_features must be {out_features} and {in_features}")
        weight = dequantized(packed, scales, zeros, group_size)
        step = judge_int4(w, group_size, symmetric)[1].repeat_interleave(group_size, dim=1)
        worst = float(((w - weight).abs() / step).max())
        assert worst <= 0.5 + FP16_SCALE_SLACK, (
            f"{what}: read back in pack_int4's order, a weight is {worst:.2f} steps off (at most half a step)")
        assert layer.nbytes.value() == nbytes(packed, scales, zeros), (
            f"{what}: nbytes must be packed + scales + zeros = {nbytes(packed, scales, zeros)} bytes")
        x = torch.randn(5, in_features, generator=generator)
        got = layer(x)
        assert isinstance(got, torch.Tensor) and got.shape == (5, out_features) and got.dtype == torch.float32, (
            f"{what}: layer(x) for x (5, {in_features}) float32 must be (5, {out_features}) float32")
        torch.testing.assert_close(got, x @ weight.T, rtol=1e-4, atol=1e-4,
                                   msg=lambda m: f"{what}: layer(x) != x @ dequant(W).T. {m}"[:300])
        got = layer(x.to(torch.bfloat16))
        assert isinstance(got, torch.Tensor) and got.dtype == torch.bfloat16, (
            f"{what}: W4A16 computes in the activations' dtype: bfloat16 in, bfloat16 out")
        torch.testing.assert_close(got.float(), x @ weight.T, rtol=0.05, atol=0.05)


@pytest.mark.points(1)
def test_from_codes(student):
    """Int4Linear.from_codes packs the given codes (pack_int4's order) and keeps their scales"""
    for w, group_size, symmetric in layer_cases():
        codes, scales, zeros = judge_int4(w, group_size, symmetric)
        layer = student.Int4Linear.from_codes(codes, scales, zeros, group_size)
        packed, got_scales, got_zeros, _ = fetch_int4_layer(layer, *w.shape, "Int4Linear.from_codes(...)")
        assert torch.equal(packed, judge_pack(codes)), "from_codes: packed must be pack_int4(codes)"
        assert torch.equal(got_scales, scales.half()) and torch.equal(got_zeros.float(), zeros), (
            "from_codes: keep the given scales (as float16) and zero-points")


@pytest.mark.points(4)
@pytest.mark.timeout(120)
def test_quantized_course_model(student):
    """quantize_engine_rtn: every block linear a W4A16 layer (<= 0.16x the FP32 bytes), the rest
    untouched, the engine computing with them, and the KL from FP32 of the reference's RTN"""
    from llmopt.engine import Engine
    from llmopt.quality import kl_divergence

    group_size, symmetric = 64, False
    engine = judge_engine()
    quantized = student.quantize_engine_rtn(student_engine(student), group_size, symmetric)
    layers = quantized.weights.layers.value()
    assert isinstance(layers, tuple) and len(layers) == len(engine.weights.layers), (
        f"the quantized engine must keep the {len(engine.weights.layers)} layers")
    weights, reference_weights, int4_bytes, fp32_bytes = {}, {}, 0, 0
    for index, (layer, judge_layer) in enumerate(zip(layers, engine.weights.layers)):
        for name, attribute in LINEARS:
            w = getattr(judge_layer, attribute).T  # (out, in)
            what = f"layers.{index}.{name}"
            packed, scales, zeros, g = fetch_int4_layer(getattr(layer, attribute), *w.shape, what)
            assert g == group_size, f"{what}: group_size must be {group_size}, got {g}"
            weights[what] = weight = dequantized(packed, scales, zeros, g)
            step = judge_int4(w, group_size, symmetric)[1].repeat_interleave(group_size, dim=1)
            worst = float(((w - weight).abs() / step).max())
            assert worst <= 0.5 + FP16_SCALE_SLACK, (
                f"{what}: a weight is {worst:.2f} steps from the FP32 one: quantize the weight the engine "
                f"multiplies by, (out, in), groups along the input")
            codes, judge_scales, judge_zeros = judge_int4(w, group_size, symmetric)
            reference_weights[what] = dequantized(judge_pack(codes), judge_scales.half(), judge_zeros, group_size)
            int4_bytes += nbytes(packed, scales, zeros)
            fp32_bytes += w.numel() * 4
    for field in ("embed_tokens", "lm_head", "final_norm"):
        assert torch.equal(getattr(quantized.weights, field).value(), getattr(engine.weights, field)), (
            f"weights.{field} must stay the full-precision tensor")
    assert fp32_bytes / int4_bytes >= MIN_COMPRESSION, (
        f"the INT4 linears take {int4_bytes / fp32_bytes:.4f}x their FP32 bytes, more than "
        f"{1 / MIN_COMPRESSION:.2f}x")

    rebuilt = Engine(engine.weights.map_linears(lambda name, w: weights[name]))
    tokens = judge_tokens(64)[None]  # (1, 64)
    positions = torch.arange(64)[None]
    got = quantized.forward(tokens, positions)
    assert isinstance(got, torch.Tensor) and got.shape == (1, 64, engine.weights.lm_head.shape[0]), (
        "the quantized engine's forward must return logits (1, 64, V)")
    torch.testing.assert_close(got, rebuilt.forward(tokens, positions), rtol=1e-3, atol=1e-3, msg=lambda m: (
        f"the quantized engine does not compute with its W4A16 layers (or they do not compute "
        f"x @ dequant(W).T). {m}")[:300])

    held_out = judge_tokens(1024)
    reference = Engine(engine.weights.map_linears(lambda name, w: reference_weights[name]))
    kl_student = kl_divergence(rebuilt, engine, held_out)
    kl_reference = kl_divergence(reference, engine, held_out)
    assert kl_student > 0 and kl_reference / kl_student >= MIN_KL_RATIO, (
        f"KL from the FP32 model: {kl_student:.5f} nats/token, the reference RTN's {kl_reference:.5f}")
