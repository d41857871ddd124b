"""Exercise 3: AWQ. The judge reads the student's folded model and quantized model as raw
tensors (full-precision linears and norms; packed codes, float16 scales, zero-points),
rebuilds them with its own code and measures them itself: the fold must leave the logits
unchanged, and the quantized model must be closer to FP32 (KL on held-out text) than the
judge's RTN, by at least a share of what the reference AWQ gains in the same run."""
import functools

import pytest
import torch

from course_config import THRESHOLDS
from grader.suites.ch07_quantization._calibrated import (
    fetch_full_precision_model, fetch_quantized_model, judge_calibration, judge_heldout, judge_rtn,
    kl_from_fp32, reference_int4_weights, rebuilt_weights)
from grader.suites.ch07_quantization._course import judge_engine, student_engine

MIN_GAIN = THRESHOLDS["ch07_quantization/awq_gain_vs_reference"].minimum
GROUP_SIZE = 128


@functools.lru_cache(maxsize=1)
def reference_kl(reference_awq_quantize) -> float:
    quantized = reference_awq_quantize(judge_engine(), judge_calibration(), GROUP_SIZE)
    return kl_from_fp32(reference_int4_weights(quantized), {
        i: (layer.attention_norm, layer.mlp_norm) for i, layer in enumerate(quantized.weights.layers)})


@pytest.mark.points(3)
@pytest.mark.timeout(120)
def test_fold_is_output_equivalent(student):
    """awq_fold: scales folded into the norms and the preceding linears leave the logits unchanged"""
    from llmopt.engine import Engine

    result = student.awq_fold(student_engine(student), judge_calibration(), GROUP_SIZE, grid=5)
    assert isinstance(result, tuple) and len(result) == 2, "awq_fold must return (engine, alphas)"
    weights, norms = fetch_full_precision_model(result[0], "awq_fold", with_norms=True)
    folded = Engine(rebuilt_weights(weights, norms))
    engine = judge_engine()
    tokens = judge_heldout()[:128][None]
    positions = torch.arange(128).unsqueeze(0)  # (1, T)
    gap = (folded.forward(tokens, positions) - engine.forward(tokens, positions)).abs().max().item()
    assert gap < 1e-3, (
        f"the folded model's logits differ from the original's by {gap:.2e}: each scale s that multiplies "
        f"a weight's input channel must divide what produces that input (the RMSNorm weight, up's or "
        f"v's output rows)")
    original = {}
    engine.weights.map_linears(lambda name, w: original.setdefault(name, w))
    changed = [name for name, w in weights.items() if (w - original[name]).abs().max() > 1e-4 * w.abs().max()]
    assert changed, "awq_fold changed no weight: every searched alpha was 0 (that is RTN)"


@pytest.mark.points(5)
@pytest.mark.timeout(180)
def test_awq_beats_rtn(student, reference):
    """awq_quantize at g128: symmetric W4A16 layers, closer to FP32 than RTN (KL on held-out text)"""
    quantized = student.awq_quantize(student_engine(student), judge_calibration(), GROUP_SIZE)
    weights, norms = fetch_quantized_model(quantized, GROUP_SIZE, "awq_quantize", with_norms=True)
    kl_student = kl_from_fp32(weights, norms)
    kl_rtn = kl_from_fp32(judge_rtn(GROUP_SIZE))
    kl_reference = reference_kl(reference.awq_quantize)
    needed = kl_rtn - MIN_GAIN * (kl_rtn - kl_reference)
    assert kl_student < kl_rtn and kl_student <= needed, (
        f"KL from FP32 on held-out text (nats/token): yours {kl_student:.5f}, RTN {kl_rtn:.5f}, the "
        f"reference AWQ {kl_reference:.5f}; needed at most {needed:.5f}. Check the fold (section 3's "
        f"first check) and that each method quantizes the folded weights on what they now see")
