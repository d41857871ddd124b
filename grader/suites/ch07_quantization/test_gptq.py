"""Exercise 4: GPTQ. On single layers the judge builds the inputs, hands the student their
Hessian, dequantizes the returned codes itself and measures the output error against its
own RTN and the reference GPTQ; on the course model it rebuilds the quantized engine from
raw tensors and measures the KL from FP32 on held-out text."""
import functools

import pytest
import torch

from course_config import THRESHOLDS
from grader.suites.ch07_quantization._calibrated import (
    fetch_quantized_model, judge_calibration, judge_rtn, kl_from_fp32, reference_int4_weights)
from grader.suites.ch07_quantization._course import judge_engine, student_engine
from grader.suites.ch07_quantization._formats import check_tensor, judge_dequantize, judge_int4

MIN_GAIN = THRESHOLDS["ch07_quantization/gptq_gain_vs_reference"].minimum
GROUP_SIZE = 128


def layer_case(seed, out_features, in_features, dead_channel):
    """Correlated inputs (a low-rank mix plus noise, uneven channel scales): where GPTQ's
    compensation has something to work with. A dead channel is never active."""
    generator = torch.Generator().manual_seed(seed)
    mix = torch.randn(24, in_features, generator=generator)
    x = torch.randn(384, 24, generator=generator) @ mix + 0.3 * torch.randn(384, in_features, generator=generator)
    x = x * torch.linspace(0.3, 2.0, in_features)
    if dead_channel:
        x[:, 5] = 0.0
    w = torch.randn(out_features, in_features, generator=generator) * 0.05
    hessian = 2 * x.double().T @ x.double() / len(x)
    return x, w, hessian


def output_error(x, w, w_hat):
    return (x @ (w_hat - w).T).pow(2).mean().item()


CASES = [(740, 40, 128, 32, 16, False), (741, 24, 256, 64, 64, True), (742, 32, 256, 128, 32, False)]


@pytest.mark.points(1)
@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed, out_features, in_features, group_size, block_size, dead", CASES,
                         ids=[f"g{c[3]}-block{c[4]}{'-dead-input' if c[5] else ''}" for c in CASES])
def test_gptq_weight(student, reference, seed, out_features, in_features, group_size, block_size, dead):
    """gptq_quantize_weight: symmetric codes whose output error is below RTN's, as the reference's"""
    x, w, hessian = layer_case(seed, out_features, in_features, dead)
    result = student.gptq_quantize_weight(w, hessian, group_size, 0.01, block_size)
    assert isinstance(result, (tuple, list)) and len(result) == 3, "return (codes, scales, zeros)"
    groups = (out_features, in_features // group_size)
    codes = check_tensor(result[0], "codes", (out_features, in_features), (torch.uint8,))
    scales = check_tensor(result[1], "scales", groups, (torch.float32, torch.float16))
    zeros = check_tensor(result[2], "zeros", groups, (torch.float32, torch.float16, torch.uint8))
    assert int(codes.max()) <= 15 and int(codes.min()) >= 1 and (zeros.float() == 8).all(), (
        "symmetric INT4: codes q + 8 with q in [-7, 7], zeros 8")
    assert torch.isfinite(scales).all() and (scales > 0).all(), "scales must be finite and positive"
    w_student = judge_dequantize(codes, scales.float(), zeros.float(), group_size)
    error = output_error(x, w, w_student)
    error_rtn = output_error(x, w, judge_dequantize(*judge_int4(w, group_size, True), group_size))
    ref_codes, ref_scales, ref_zeros = reference.gptq_quantize_weight(w, hessian, group_size, 0.01, block_size)
    error_ref = output_error(x, w, judge_dequantize(ref_codes, ref_scales.float(), ref_zeros.float(), group_size))
    needed = error_rtn - MIN_GAIN * (error_rtn - error_ref)
    assert error < error_rtn and error <= needed, (
        f"output error mean((x (W_hat - W)^T)^2): yours {error:.4g}, RTN {error_rtn:.4g}, the reference "
        f"GPTQ {error_ref:.4g}; needed at most {needed:.4g}. Is each column's error, divided by the "
        f"Cholesky diagonal, subtracted from the later columns (and the block's errors from the rest)?")


@functools.lru_cache(maxsize=1)
def reference_kl(reference_gptq_quantize) -> float:
    return kl_from_fp32(reference_int4_weights(reference_gptq_quantize(judge_engine(), judge_calibration(), GROUP_SIZE)))


@pytest.mark.points(5)
@pytest.mark.timeout(180)
def test_gptq_beats_rtn(student, reference):
    """gptq_quantize at g128: symmetric W4A16 layers, closer to FP32 than RTN (KL on held-out text)"""
    quantized = student.gptq_quantize(student_engine(student), judge_calibration(), GROUP_SIZE)
    weights, _ = fetch_quantized_model(quantized, GROUP_SIZE, "gptq_quantize", with_norms=False)
    kl_student = kl_from_fp32(weights)
    kl_rtn = kl_from_fp32(judge_rtn(GROUP_SIZE))
    kl_reference = reference_kl(reference.gptq_quantize)
    needed = kl_rtn - MIN_GAIN * (kl_rtn - kl_reference)
    assert kl_student < kl_rtn and kl_student <= needed, (
        f"KL from FP32 on held-out text (nats/token): yours {kl_student:.5f}, RTN {kl_rtn:.5f}, the "
        f"reference GPTQ {kl_reference:.5f}; needed at most {needed:.5f}")
