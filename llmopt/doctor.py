"""What a working inference box needs, one pass/warn/fail/blocked line per check.

    python -m llmopt.doctor            # probe this machine, run the built-in checks
    facts = probe()                    # versions, GPU query, memory, disk: plain data
    lines = run(checks, facts)         # each check(facts) -> Check(s); a raising check fails
    print(report(lines))

This module holds the runner, the probing and the output format. The checks that need
judgement (reading `nvidia-smi`'s CSV, the driver/CUDA/torch compatibility matrix,
vLLM's pins) are chapter 4's exercises: the notebook passes them in, so the doctor
prints the same lines on a student's laptop and on a GPU node.

Statuses: "pass"; "warn" (works, with a caveat to read); "fail" (will not work as
installed: fix before benchmarking); "blocked" (the check needs hardware or a package
this machine does not have, e.g. a GPU or vLLM on a CPU laptop: not a failure).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, Iterable

STATUSES = ("pass", "warn", "fail", "blocked")

# The columns the doctor asks nvidia-smi for (`nvidia-smi --help-query-gpu` lists them all).
GPU_QUERY_FIELDS = ("index", "name", "driver_version", "memory.total", "memory.used",
                    "compute_cap", "mig.mode.current")
PACKAGES = ("torch", "triton", "transformers", "vllm", "flashinfer-python")


@dataclass(frozen=True)
class Check:
    status: str  # one of STATUSES
    name: str  # what was checked: "driver vs torch CUDA", "disk space", ...
    reason: str  # why, in words a student can act on

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def query_gpus(fields: Iterable[str] = GPU_QUERY_FIELDS, timeout_s: float = 10.0) -> str | None:
    """The raw CSV that `nvidia-smi --query-gpu=... --format=csv` prints, or None where
    nvidia-smi is absent or fails (no driver: every GPU check is then blocked)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv"],
                             capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _course_head_dim() -> int | None:
    import course_config

    try:
        config = json.loads((course_config.MODELS_DIR / "course-lm" / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


def probe() -> dict:
    """Facts about this machine, as plain data (what the checks read; nothing is judged here).

    torch is imported only to read its CUDA build and whether a GPU is visible."""
    facts: dict = {"python": platform.python_version(), "platform": platform.platform(),
                   "packages": {p: _version(p) for p in PACKAGES}}
    try:
        import torch

        facts["torch_cuda"] = torch.version.cuda  # None on a CPU-only build
        facts["cuda_available"] = bool(torch.cuda.is_available())
    except ImportError:
        facts["torch_cuda"], facts["cuda_available"] = None, False
    facts["nvidia_smi"] = query_gpus()
    facts["head_dim"] = _course_head_dim()
    disk = shutil.disk_usage(os.path.expanduser("~"))
    facts["disk_free_gib"] = disk.free / 2**30
    try:
        facts["memory_gib"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        facts["memory_gib"] = None
    return facts


# ---------------------------------------------------------------------------------------
# Built-in checks: what needs no judgement beyond a threshold
# ---------------------------------------------------------------------------------------

def check_python(facts: dict) -> Check:
    major, minor = (int(x) for x in facts["python"].split(".")[:2])
    ok = (major, minor) >= (3, 11)
    return Check("pass" if ok else "fail", "python", f"Python {facts['python']}"
                 + ("" if ok else ": the course's requirements need Python >= 3.11"))


def check_packages(facts: dict) -> list[Check]:
    lines = []
    for package in ("torch", "triton", "transformers"):
        version = facts["packages"].get(package)
        lines.append(Check("pass" if version else "fail", package,
                           f"{package} {version}" if version else f"{package} is not installed: "
                           "run `make setup` (environment/requirements.txt)"))
    return lines


def check_gpu_visible(facts: dict) -> Check:
    if facts.get("nvidia_smi") is None:
        return Check("blocked", "GPU visible", "no nvidia-smi or no NVIDIA driver: GPU checks are blocked")
    if not facts.get("cuda_available"):
        return Check("fail", "GPU visible", "nvidia-smi sees a GPU but torch does not: a CPU-only torch "
                     "build, or CUDA_VISIBLE_DEVICES hides it")
    return Check("pass", "GPU visible", "torch.cuda.is_available() is True")


def check_vllm_installed(facts: dict) -> Check:
    version = facts["packages"].get("vllm")
    if version is None:
        return Check("blocked", "vLLM", "vLLM is not installed (only the GPU image has it: "
                     "environment/requirements-vllm.txt)")
    return Check("pass", "vLLM", f"vllm {version}")


def check_resources(facts: dict, min_disk_gib: float = 20.0, min_memory_gib: float = 8.0) -> list[Check]:
    disk, memory = facts.get("disk_free_gib"), facts.get("memory_gib")
    lines = [Check("pass" if disk >= min_disk_gib else "warn", "disk space",
                   f"{disk:.0f} GiB free" + ("" if disk >= min_disk_gib else
                                              f": model weights and images want >= {min_disk_gib:.0f} GiB"))]
    if memory is not None:
        lines.append(Check("pass" if memory >= min_memory_gib else "warn", "host memory",
                           f"{memory:.0f} GiB" + ("" if memory >= min_memory_gib else
                                                  f": < {min_memory_gib:.0f} GiB, loading models may swap")))
    return lines


BUILTIN_CHECKS: tuple[Callable[[dict], Check | list[Check]], ...] = (
    check_python, check_packages, check_gpu_visible, check_vllm_installed, check_resources)


# ---------------------------------------------------------------------------------------
# Runner and output
# ---------------------------------------------------------------------------------------

def _as_checks(result, name: str) -> list[Check]:
    if isinstance(result, Check):
        return [result]
    if isinstance(result, tuple) and len(result) == 3 and all(isinstance(x, str) for x in result):
        return [Check(*result)]
    if isinstance(result, (list, tuple)):
        return [line for item in result for line in _as_checks(item, name)]
    raise TypeError(f"check {name} returned {type(result).__name__}: return a Check, a "
                    "(status, name, reason) tuple or a list of them")


def run(checks: Iterable[Callable[[dict], object]] = BUILTIN_CHECKS, facts: dict | None = None) -> list[Check]:
    """Every check on the same facts; a check that raises becomes one "fail" line."""
    facts = probe() if facts is None else facts
    lines: list[Check] = []
    for check in checks:
        name = getattr(check, "__name__", repr(check))
        try:
            lines += _as_checks(check(facts), name)
        except Exception as exc:  # a broken check is a line of the report, not the end of it
            lines.append(Check("fail", name, f"the check raised {type(exc).__name__}: {exc}"))
    return lines


def report(lines: list[Check]) -> str:
    width = max([len(line.name) for line in lines] + [5])
    counts = ", ".join(f"{sum(line.status == s for line in lines)} {s}" for s in STATUSES)
    return "\n".join([f"{line.status.upper():<8} {line.name:<{width}}  {line.reason}" for line in lines]
                     + [f"-- {counts}"])


def main() -> int:
    lines = run()
    print(f"llmopt.doctor on {platform.node() or 'this machine'} ({sys.executable})")
    print(report(lines))
    return 1 if any(line.status == "fail" for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
