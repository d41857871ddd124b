"""Device calibration: the ceilings that every course benchmark is measured against.

Performance checks never use absolute times (they would pass on an H200 and fail on a
laptop). They use same-run ratios, or fractions of two ceilings measured here, once per
process, on the device the code runs on:

- memory copy bandwidth, counting bytes read + bytes written (a copy of N bytes moves 2N);
- matmul rate, in float32 and bfloat16, on square matrices large enough to be
  compute-bound.

A ceiling is the best rate seen over a few trials, not the median: noise only ever
slows a run down, so the best trial is the closest to what the hardware can do.
"""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def synchronize(device: torch.device | str) -> None:
    """Wait until the device has finished all queued work (a no-op on the CPU).

    CUDA calls return before the GPU has run them; a timer read without this sync
    measures how fast Python queues kernels, not how fast they run.
    """
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------
# Fingerprint
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fingerprint:
    device: str  # "cpu" or "cuda:0"
    device_name: str  # "AMD EPYC ...", "NVIDIA H100 80GB HBM3"
    driver: str  # NVIDIA driver and CUDA runtime; the kernel release on a CPU
    threads: int  # torch intra-op threads (the CPU ceilings scale with them)
    python: str
    torch: str
    triton: str
    transformers: str


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _nvidia_driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def fingerprint(device: torch.device | str | None = None) -> Fingerprint:
    device = torch.device(device or default_device())
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(index)
        driver = f"NVIDIA {_nvidia_driver()}, CUDA runtime {torch.version.cuda}"
        label = f"cuda:{index}"
    else:
        name, driver, label = _cpu_name(), f"{platform.system()} {platform.release()}", "cpu"
    return Fingerprint(device=label, device_name=name, driver=driver,
                       threads=torch.get_num_threads(), python=sys.version.split()[0],
                       torch=torch.__version__, triton=_version("triton"),
                       transformers=_version("transformers"))


# ---------------------------------------------------------------------------------------
# Ceilings
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Calibration:
    fingerprint: Fingerprint
    copy_bytes_per_s: float  # bytes read + bytes written per second
    matmul_float32_flops_per_s: float
    matmul_bfloat16_flops_per_s: float
    seconds_spent: float  # how long calibrating took

    def matmul_flops_per_s(self, dtype: torch.dtype = torch.float32) -> float:
        """The matmul ceiling of `dtype`; float16 uses the bfloat16 one (same units)."""
        if dtype == torch.float32:
            return self.matmul_float32_flops_per_s
        if dtype in (torch.bfloat16, torch.float16):
            return self.matmul_bfloat16_flops_per_s
        raise ValueError(f"no matmul ceiling for {dtype}; calibrated: float32, bfloat16")

    def ridge_point(self, dtype: torch.dtype = torch.float32) -> float:
        """FLOPs per byte above which a kernel can be compute-bound (the roofline's knee)."""
        return self.matmul_flops_per_s(dtype) / self.copy_bytes_per_s

    def table(self) -> str:
        f = self.fingerprint
        rows = [("device", f"{f.device} ({f.device_name})"), ("driver", f.driver),
                ("torch threads", str(f.threads)),
                ("versions", f"python {f.python}, torch {f.torch}, triton {f.triton}, "
                             f"transformers {f.transformers}"),
                ("copy bandwidth (read + write)", f"{self.copy_bytes_per_s / 1e9:,.1f} GB/s"),
                ("matmul float32", f"{self.matmul_float32_flops_per_s / 1e9:,.1f} GFLOP/s"),
                ("matmul bfloat16", f"{self.matmul_bfloat16_flops_per_s / 1e9:,.1f} GFLOP/s"),
                ("ridge point float32", f"{self.ridge_point(torch.float32):,.1f} FLOP/byte"),
                ("ridge point bfloat16", f"{self.ridge_point(torch.bfloat16):,.1f} FLOP/byte"),
                ("calibration took", f"{self.seconds_spent:.1f} s")]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _best_seconds(operation, device: torch.device, budget_s: float, min_trials: int = 3) -> float:
    """Fastest of several timed calls of `operation`, after one untimed warm-up call."""
    operation()
    synchronize(device)
    best, spent, trials = float("inf"), 0.0, 0
    while trials < min_trials or spent < budget_s:
        start = time.perf_counter()
        operation()
        synchronize(device)
        elapsed = time.perf_counter() - start
        best, spent, trials = min(best, elapsed), spent + elapsed, trials + 1
    return best


def measure_copy_bandwidth(device: torch.device, budget_s: float = 0.3) -> float:
    """Bytes read + written per second by `dst.copy_(src)` on buffers far larger than caches."""
    n_bytes = (1 << 30) if device.type == "cuda" else (128 << 20)
    source = torch.ones(n_bytes // 4, dtype=torch.float32, device=device)
    destination = torch.empty_like(source)
    seconds = _best_seconds(lambda: destination.copy_(source), device, budget_s)
    return 2 * n_bytes / seconds


def measure_matmul_rate(device: torch.device, dtype: torch.dtype, budget_s: float = 0.3) -> float:
    """FLOP/s of an n x n x n matmul (2 n^3 FLOPs), n large enough to be compute-bound."""
    n = 8192 if device.type == "cuda" else 1024
    if device.type == "cpu" and dtype != torch.float32:
        n = 512  # CPUs without bf16 units emulate it slowly; keep calibration short
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    seconds = _best_seconds(lambda: torch.matmul(a, b, out=out), device, budget_s)
    return 2 * n**3 / seconds


@functools.lru_cache(maxsize=None)
def _calibrate(device: torch.device, threads: int) -> Calibration:
    started = time.perf_counter()
    with torch.no_grad():
        copy = measure_copy_bandwidth(device)
        fp32 = measure_matmul_rate(device, torch.float32)
        bf16 = measure_matmul_rate(device, torch.bfloat16)
    return Calibration(fingerprint(device), copy, fp32, bf16, time.perf_counter() - started)


def calibrate(device: torch.device | str | None = None) -> Calibration:
    """The device's ceilings, measured on the first call in this process and then reused.

    Measured again if the number of torch threads changes, since CPU ceilings scale with it.
    """
    device = torch.device(device or default_device())
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return _calibrate(device, torch.get_num_threads())
