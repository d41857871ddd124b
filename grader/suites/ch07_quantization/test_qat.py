"""Exercise 6: INT4 QAT. The fake quantizer's forward is checked against the judge's,
its backward through the notebook's locked `fake_quant_gradient` (the STE hands the
gradient on unchanged); a short distillation run is compared with the reference's run on
the same data, the judge fake-quantizing both sets of latent weights itself; the export's
raw tensors must be the judge's fake quantization of the same weights, and the exported
engine must compute with them."""
import functools

import pytest
import torch

from course_config import THRESHOLDS
from grader.suites.ch07_quantization._calibrated import (
    engine_weights, fetch_full_precision_model, fetch_quantized_model, judge_calibration, judge_fake_quant,
    judge_heldout, judge_rtn, kl_from_fp32, rebuilt_weights)
from grader.suites.ch07_quantization._course import judge_engine, student_engine

MIN_GAIN = THRESHOLDS["ch07_quantization/qat_gain_vs_reference"].minimum
GROUP_SIZE = 32
STEPS, BATCH, LR = 4, 2, 1e-5  # a tiny run: the same 2 windows every step


def cases():
    generator = torch.Generator().manual_seed(760)
    for out_features, in_features, magnitude in ((16, 128, 0.05), (8, 64, 3.0), (4, 96, 1e-3)):
        w = torch.randn(out_features, in_features, generator=generator) * magnitude
        w[0, 0] = 10 * magnitude  # an outlier sets its group's scale
        w[1, :GROUP_SIZE] = 0.0  # an all-zero group
        yield w


@pytest.mark.points(1)
def test_fake_quant_forward(student):
    """fake_quant_int4: symmetric INT4 in [-7, 7], one scale per 1x32 group of inputs"""
    for w in cases():
        got = student.fake_quant_int4(w, GROUP_SIZE)
        assert isinstance(got, torch.Tensor) and got.shape == w.shape and got.dtype == w.dtype, (
            f"fake_quant_int4 of a {tuple(w.shape)} float32 weight must be a {tuple(w.shape)} float32 tensor")
        want = judge_fake_quant(w, GROUP_SIZE)
        step = (w.abs().reshape(w.shape[0], -1, GROUP_SIZE).amax(-1) / 7).clamp(min=1e-12)
        off = ((got - want).abs().reshape(w.shape[0], -1, GROUP_SIZE) / step[..., None]).flatten()
        assert torch.isfinite(got).all() and float(off.max()) <= 1.01 and float((off > 0.01).float().mean()) <= 0.005, (
            f"fake_quant_int4 ({tuple(w.shape)}, group {GROUP_SIZE}) is up to {float(off.max()):.2f} steps from "
            f"round(w / s).clamp(-7, 7) * s with s = max|group| / 7 (an all-zero group stays zero)")


@pytest.mark.points(2)
def test_straight_through_gradient(student):
    """FakeQuantInt4's backward: the straight-through estimator passes the gradient unchanged"""
    generator = torch.Generator().manual_seed(761)
    for w in cases():
        upstream = torch.randn(w.shape, generator=generator)
        result = student.fake_quant_gradient(w, upstream, GROUP_SIZE)
        assert isinstance(result, (tuple, list)) and len(result) == 2, "fake_quant_gradient is the notebook's"
        grad = result[1]
        assert isinstance(grad, torch.Tensor) and grad.shape == w.shape, (
            "the latent weight received no gradient: does backward return one for the weight?")
        assert torch.allclose(grad, upstream, rtol=1e-6, atol=1e-7), (
            f"the gradient reaching the latent weight differs from the upstream gradient (largest gap "
            f"{float((grad - upstream).abs().max()):.3g}): the STE treats quantization as the identity, "
            f"d w_hat / d w = 1, everywhere")


@functools.lru_cache(maxsize=1)
def reference_run(reference_qat_finetune):
    tuned, losses = reference_qat_finetune(judge_engine(), qat_windows(), STEPS, GROUP_SIZE, LR, BATCH)
    return engine_weights(tuned), losses


def qat_windows():
    return judge_calibration(BATCH * 128, window=128, seed=3)  # (2, 128), train split


@pytest.mark.points(3)
@pytest.mark.timeout(180)
def test_qat_finetune(student, reference):
    """qat_finetune: the loss goes down, and the fake-quantized latent weights move toward FP32
    as much as the reference's do on the same data"""
    result = student.qat_finetune(student_engine(student), qat_windows(), STEPS, GROUP_SIZE, LR, BATCH)
    assert isinstance(result, tuple) and len(result) == 2, "qat_finetune must return (engine, losses)"
    losses = result[1]
    assert isinstance(losses, list) and len(losses) == STEPS and all(
        isinstance(v, float) and v == v for v in losses), f"losses: one float per step ({STEPS})"
    assert losses[-1] < losses[0], f"the loss did not go down on the same batch repeated: {losses}"
    latent, _ = fetch_full_precision_model(result[0], "qat_finetune", with_norms=False)
    kl_student = kl_from_fp32({n: judge_fake_quant(w, GROUP_SIZE) for n, w in latent.items()})
    reference_latent, _ = reference_run(reference.qat_finetune)
    kl_reference = kl_from_fp32({n: judge_fake_quant(w, GROUP_SIZE) for n, w in reference_latent.items()})
    kl_rtn = kl_from_fp32(judge_rtn(GROUP_SIZE))
    needed = kl_rtn - MIN_GAIN * (kl_rtn - kl_reference)
    assert kl_student <= needed, (
        f"KL from FP32 on held-out text of the INT4 g32 model (nats/token): after your {STEPS} steps "
        f"{kl_student:.5f}, RTN {kl_rtn:.5f}, after the reference's {kl_reference:.5f}; needed at most "
        f"{needed:.5f}")


@pytest.mark.points(2)
@pytest.mark.timeout(120)
def test_export_matches_fake_quant(student):
    """export_qat: Int4Linear layers holding exactly the fake quantizer's codes and float16 scales"""
    from llmopt.engine import Engine

    exported = student.export_qat(student_engine(student), GROUP_SIZE)
    weights, _ = fetch_quantized_model(exported, GROUP_SIZE, "export_qat", with_norms=False)
    for name, w in engine_weights(judge_engine()).items():
        want = judge_fake_quant(w, GROUP_SIZE)
        gap = float((weights[name] - want).abs().max())
        assert gap <= 1e-6 * float(w.abs().max()), (
            f"{name}: the exported weight is up to {gap:.2e} from the fake-quantized one: export the same "
            f"codes with the same float16 scales (absmax / 7 rounded to float16), groups of {GROUP_SIZE}")
    tokens = judge_heldout()[:96][None]
    positions = torch.arange(96).unsqueeze(0)  # (1, T)
    got = exported.forward(tokens, positions)
    want = Engine(rebuilt_weights(weights)).forward(tokens, positions)
    assert isinstance(got, torch.Tensor) and got.shape == want.shape, "the exported engine's forward: (1, T, V) logits"
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3, msg=lambda m: (
        f"the exported engine does not compute with its W4A16 layers. {m}")[:300])
