"""The course model as the judge holds it (trusted, loaded once per suite run), and what the
chapter 7 suites need to rebuild a student's quantized engine from its raw tensors."""
import functools

import torch

from grader.suites.ch07_quantization._formats import check_tensor, judge_dequantize, judge_unpack

LINEARS = (("qkv", "qkv_t"), ("o", "o_t"), ("gate_up", "gate_up_t"), ("down", "down_t"))


@functools.lru_cache(maxsize=1)
def judge_engine():
    from llmopt.engine import Engine

    return Engine.from_checkpoint("course-lm")


@functools.lru_cache(maxsize=4)
def judge_tokens(n: int) -> torch.Tensor:
    from llmopt.quality import heldout_tokens

    return heldout_tokens(n)


def student_engine(student):
    """The course model's Engine, built inside the student's worker (a handle), read from
    the checkpoint: the same tensors as from_model(load_model(...)), without transformers."""
    return student.library("llmopt.engine:Engine").from_checkpoint("course-lm")


def fetch_int4_layer(layer, out_features: int, in_features: int, what: str):
    """The tensors of a student's W4A16 layer (a handle), validated: (packed, scales, zeros, g)."""
    group_size = layer.group_size.value()
    assert type(group_size) is int and group_size > 0 and in_features % group_size == 0, (
        f"{what}: group_size must be a positive int dividing {in_features}, got {group_size!r:.50}")
    groups = (out_features, in_features // group_size)
    packed = check_tensor(layer.packed.value(), f"{what}.packed", (out_features, in_features // 2), (torch.uint8,))
    scales = check_tensor(layer.scales.value(), f"{what}.scales", groups, (torch.float16,))
    zeros = check_tensor(layer.zeros.value(), f"{what}.zeros", groups, (torch.uint8, torch.float16))
    assert torch.isfinite(scales).all(), f"{what}.scales must be finite"
    assert (zeros.float() == zeros.float().round()).all() and float(zeros.float().max()) <= 15 \
        and float(zeros.float().min()) >= 0, f"{what}.zeros must hold whole numbers in [0, 15]"
    return packed, scales, zeros, group_size


def dequantized(packed, scales, zeros, group_size) -> torch.Tensor:
    return judge_dequantize(judge_unpack(packed), scales.float(), zeros.float(), group_size)


def nbytes(*tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)
