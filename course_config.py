"""The one place for course facts.

Chapters and their bilingual titles, grading limits, model locations and performance
thresholds live here and nowhere else: `nbgrader_config.py`, the grader, the course
library and the tests all read them from this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
COURSE_ID = "llm-inference-optimization"
BOOK_TITLE_ZH = "LLM推理性能优化"


@dataclass(frozen=True)
class Chapter:
    number: int
    slug: str  # chNN_slug: the nbgrader assignment id and the folder name everywhere
    title_en: str
    title_zh: str  # the book's own chapter title
    notebooks: tuple[str, ...] = ()  # notebook stems under source/<slug>/; () = not written yet
    execute_timeout_s: int = 120  # nbgrader's per-cell limit in the student kernel
    worker_memory_mb: int = 4096  # data-segment cap (RLIMIT_DATA) of one grading worker
    test_timeout_s: float = 20.0  # default wall time of one hidden test
    # Modules a grading worker imports before the student's code: what the chapter's code
    # needs. The zygote of a submission's run imports them once (torch: ~2 s of CPU) and
    # forks every worker of that run from there (grader/student.py, `Zygote`).
    worker_imports: tuple[str, ...] = ("numpy", "torch")

    @property
    def short(self) -> str:
        return self.slug.split("_", 1)[0]


CHAPTERS: tuple[Chapter, ...] = (
    Chapter(1, "ch01_why_optimize", "Why Optimize Inference", "动机：推理优化的商业价值",
            notebooks=("ch01_why_optimize",), execute_timeout_s=10, worker_memory_mb=1024,
            test_timeout_s=2.0, worker_imports=("numpy",)),
    Chapter(2, "ch02_landscape", "The Landscape and the 2025 Trends", "技术全景与2025趋势"),
    Chapter(3, "ch03_gpu_fundamentals", "GPU Fundamentals", "GPU架构原理",
            notebooks=("ch03_gpu_fundamentals",), execute_timeout_s=120, worker_memory_mb=4096,
            test_timeout_s=30.0),  # no "triton" here: imported before the setup cell sets
            # TRITON_INTERPRET, its own @jit helpers (tl.sum's combine) would not be interpreted
    Chapter(4, "ch04_environment", "The Environment: Docker, vLLM, CUDA", "环境搭建（Docker、vLLM、CUDA）",
            notebooks=("ch04_environment",), execute_timeout_s=120, worker_memory_mb=1024,
            test_timeout_s=5.0, worker_imports=("numpy",)),
    Chapter(5, "ch05_kv_cache", "KV Cache Optimization", "KV Cache优化",
            notebooks=("ch05_kv_cache",), execute_timeout_s=300, worker_memory_mb=6144,
            test_timeout_s=30.0),
    Chapter(6, "ch06_scheduling", "Request Scheduling", "请求调度策略",
            notebooks=("ch06_scheduling",), execute_timeout_s=300, worker_memory_mb=4096,
            test_timeout_s=30.0),
    Chapter(7, "ch07_quantization", "Quantization: from PTQ to INT4 QAT", "量化技术（PTQ→INT4 QAT）",
            notebooks=("ch07_quantization",), execute_timeout_s=300, worker_memory_mb=6144,
            test_timeout_s=30.0),
    Chapter(8, "ch08_speculative_decoding", "Speculative Decoding: from Theory to EAGLE-3",
            "投机采样（原理→Eagle 3）", notebooks=("ch08_speculative_decoding",),
            execute_timeout_s=300, worker_memory_mb=4096, test_timeout_s=30.0),
    Chapter(9, "ch09_production", "Production Deployment", "生产部署"),
    Chapter(10, "ch10_heterogeneous", "Heterogeneous Hardware: H100 + H200", "异构硬件部署（H100+H200）"),
)

# Chapters whose notebooks exist; the build, the grader and the tests iterate over these.
ACTIVE_CHAPTERS: tuple[Chapter, ...] = tuple(ch for ch in CHAPTERS if ch.notebooks)


def chapter(key: str | int) -> Chapter:
    """Look a chapter up by slug ("ch01_why_optimize"), short name ("ch01") or number."""
    for ch in CHAPTERS:
        if key in (ch.slug, ch.short, ch.number, str(ch.number)):
            return ch
    known = ", ".join(ch.slug for ch in CHAPTERS)
    raise KeyError(f"no chapter {key!r}; the chapters are: {known}")


# ---------------------------------------------------------------------------------------
# Where nbgrader and the students work (all git-ignored; a relative path is taken from
# the course directory, this repository unless LLMOPT_COURSE_DIR names a scratch copy)
# ---------------------------------------------------------------------------------------

# nbgrader's exchange: release_assignment puts a chapter there, fetch_assignment takes it
# out, submit puts a submission back, collect takes it to submitted/. Inside the course
# directory by default, so the whole round trip runs on one machine with nothing under
# /usr/local/share; LLMOPT_EXCHANGE_DIR names a shared folder instead (a class on one
# machine or a JupyterHub: it must then be writable by every student).
EXCHANGE_DIR = Path(os.environ.get("LLMOPT_EXCHANGE_DIR") or "exchange")
# The students' workspace: `make lab` serves it and adds the chapters it lacks from
# release/ (never replacing a notebook there); fetch_assignment fills it from the exchange
# and submit sends from it. Students never work in release/, which every build rewrites.
WORKSPACE_DIR = Path(os.environ.get("LLMOPT_WORKSPACE_DIR") or "workspace")


# ---------------------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grading:
    # Stderr lines that nbgrader must not count as errors (it zeroes a cell with any stderr).
    ignore_stderr_pattern: str = (
        r"UserWarning|FutureWarning|DeprecationWarning|NNPACK|TRITON_INTERPRET|"
        r"Matplotlib is building the font cache"
    )
    # Limits of one grading worker (the process that runs student code).
    worker_output_bytes: int = 1 << 20  # student prints beyond this end the worker
    worker_threads: int = 1  # torch/BLAS threads: same speed for every student, no oversubscription
    # Share of a GPU's memory one worker's PyTorch allocator may take (a student's worker
    # and the baseline worker share one card). PyTorch's own per-process cap: a
    # hostile submission could lift it in its own process, but not beyond the card.
    worker_gpu_memory_fraction: float = 0.45
    # Backstop for a whole suite run, on top of each test's own wall-time limit.
    suite_timeout_s: float = 600.0
    # Known hardware-dependent checks are reported "blocked" where the hardware is absent;
    # blocked tests leave the cell's denominator instead of scoring zero.
    blocked_counts_against: bool = False


GRADING = Grading()


# ---------------------------------------------------------------------------------------
# Models and workloads
# ---------------------------------------------------------------------------------------

MODELS_DIR = ROOT / "models"

# Name -> Hugging Face directory or hub id. Replace a value with a hub id (e.g. a Qwen or
# Llama checkpoint) on a machine that reaches the hub; the course never downloads by itself.
MODELS: dict[str, str] = {
    "course-lm": str(MODELS_DIR / "course-lm"),
    "course-lm-draft": str(MODELS_DIR / "course-lm-draft"),
}

# Under test (COURSE_SMALL=1) notebooks shrink their workloads so `make test` stays short.
SMALL_WORKLOAD: bool = os.environ.get("COURSE_SMALL", "") not in ("", "0")


# ---------------------------------------------------------------------------------------
# Performance thresholds: same-run ratios or fractions of a ceiling measured on the device
# (never an absolute time). Keyed by "<chapter>/<check>".
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Threshold:
    kind: str  # "ratio" (candidate vs baseline, same run) or "fraction_of_peak"
    minimum: float
    device: str = "any"  # "any", "cpu" or "cuda"; others are reported blocked
    note: str = ""


THRESHOLDS: dict[str, Threshold] = {
    # Chapter 5. Ratios are speeds (baseline time / candidate time), so higher is better.
    "ch05_kv_cache/cached_decode_speedup": Threshold(
        "ratio", 3.0, note="recompute time / cached time of a decode step at sequence length "
        "~512, the end of a 512-token generation on the course model"),
    "ch05_kv_cache/paged_vs_dense_speed": Threshold(
        "ratio", 1 / 16, note="dense sdpa time / PyTorch paged-attention time on the same data: "
        "at most 16x slower. On the course's CPU a one-shot gather measured 4-5x (2 cores "
        "busy), a per-token Python loop 120-160x; the bound sits between them with room "
        "for load on either side"),
    "ch05_kv_cache/triton_bandwidth_vs_reference": Threshold(
        "ratio", 0.5, device="cuda", note="K and V bytes read per second by the student's "
        "Triton kernel / by the reference split-KV kernel, 8k context, fp16, interleaved in "
        "the same run: holds on any card. The reference's own fraction of the calibrated copy "
        "bandwidth is measured by `make gpu-check` (goal >= 0.7)"),
    # Chapter 6: the simulator is deterministic, so these ratios are exact.
    "ch06_scheduling/continuous_vs_static_throughput": Threshold(
        "ratio", 2.0, note="continuous / static batching throughput, bursty mixed-length trace"),
    "ch06_scheduling/chunked_tpot_p99_gain": Threshold(
        "ratio", 1 / 0.9, note="p99 TPOT of continuous batching / of chunked prefill, long prompts"),
    "ch06_scheduling/chunked_throughput_kept": Threshold(
        "ratio", 0.95, note="chunked / continuous batching throughput on the same trace"),
    "ch06_scheduling/goodput_vs_reference": Threshold(
        "ratio", 0.9, note="the student's goodput / the reference policy's, per exercise"),
    # Chapter 7: quality is measured in the judge on tensors it dequantized itself.
    "ch07_quantization/rtn_kl_vs_reference": Threshold(
        "ratio", 0.95, note="reference RTN's KL from the FP32 model / the student's RTN's, course "
        "model, INT4 g64 asymmetric, 1,024 held-out tokens: the format is fully specified, so "
        "the two agree but for float16 rounding; 0.95 leaves room for rounding ties"),
    "ch07_quantization/int4_compression_vs_fp32": Threshold(
        "ratio", 1 / 0.16, note="FP32 bytes / INT4 bytes of the course model's block linears, "
        "packed codes + scales + zero-points counted exactly (the issue's <= 0.16x bar)"),
    "ch07_quantization/w4a16_speed_vs_reference": Threshold(
        "ratio", 0.5, device="cuda", note="reference Triton W4A16 kernel's time per call / the "
        "student's, batch 1, a (4096 x 14336) weight, group 128, fp16, interleaved in the same "
        "run. Not yet measured on a GPU (VALIDATION.md); the reference's own goals (>= 60 % of "
        "the calibrated copy bandwidth, >= 2.5x the FP16 matmul) are `make gpu-check` rows"),
    "ch07_quantization/awq_gain_vs_reference": Threshold(
        "ratio", 0.5, note="(RTN's KL from FP32 - the student's AWQ's) / (RTN's - the reference "
        "AWQ's), course model, INT4 g128 symmetric, 512 calibration tokens of the train split, "
        "1,024 held-out tokens, all measured in the judge in the same run; the student's KL must "
        "also be strictly below RTN's"),
    "ch07_quantization/gptq_gain_vs_reference": Threshold(
        "ratio", 0.5, note="as awq_gain_vs_reference, for GPTQ; on single layers the same ratio "
        "of output-error reductions below RTN, on the judge's correlated inputs"),
    "ch07_quantization/qat_gain_vs_reference": Threshold(
        "ratio", 0.5, note="(RTN g32's KL from FP32 - the student's fake-quantized QAT model's) / "
        "(RTN g32's - the reference QAT's), after the same 4 distillation steps on the same 2 "
        "train windows, both fake-quantized by the judge"),
    # Chapter 8: speculation must pay where it can, whatever this CPU does with the course pair.
    "ch08_speculative_decoding/ideal_drafter_speed_vs_reference": Threshold(
        "ratio", 0.6, note="reference time / the student's time of speculative_generate, greedy, "
        "g = 5, 36 new tokens, with a target 8x as deep as its drafter that always agrees (the "
        "course model with 7 silent copies of each layer, drafted by the course model), "
        "interleaved in the same run. Plain decoding dressed up with forged counts measured "
        "0.32x the reference there (control speculation_faked); the reference itself is 1x"),
}
