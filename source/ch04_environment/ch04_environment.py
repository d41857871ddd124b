# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   llmcourse:
#     chapter: ch04_environment
# ---

# %% [markdown]
# # Chapter 4 · The Environment: Docker, vLLM, CUDA
# ## 第4章 环境搭建（Docker、vLLM、CUDA）
#
# An inference stack is a tower of versions: the GPU and its driver at the bottom, a CUDA
# runtime built into PyTorch above it, Triton and attention libraries compiled against
# that PyTorch, and a serving engine such as vLLM pinned to all of them. Each layer
# works only with some versions of the others, and a mismatch rarely fails loudly: it
# falls back to a slower path, or fails only on the first request. Then, once the stack
# runs, you measure it, and a benchmark has its own classic bugs that make a slow system
# look fast.
#
# This chapter builds the two tools that stand between an engineer and both traps: an
# **environment doctor** that reads the machine and says pass, warn, fail or blocked with
# a reason, and a **benchmark harness** that times a function correctly.
#
# **Learning goals · 学习目标**
#
# 1. Read a GPU's facts from `nvidia-smi`'s CSV output, whatever columns were asked for
#    and whatever the GPU does not report.
# 2. Decide from the compatibility matrix whether a driver runs a PyTorch build's CUDA
#    runtime, and whether a machine meets vLLM's pins (Python, torch, FlashInfer, the
#    attention backend's head sizes).
# 3. Time a function on an asynchronous device: warm-up, synchronisation on both sides of
#    the clock, the median of repeats and a robust noise estimate; see each classic timing
#    bug give a wrong answer.
# 4. Measure Hugging Face `generate` against the course engine on the same tokens with
#    that harness.
# 5. Measure a served model from outside: parse an OpenAI-compatible stream into TTFT and
#    TPOT, and replay a small trace against a loopback server on the course engine.
#
# **Why it matters in money.** A wrong environment costs GPU-hours without producing
# tokens: a node whose driver is too old for the image's CUDA runtime serves nothing, and
# one that silently falls back to a slower attention backend serves each token at a
# higher price. A wrong benchmark costs more: a speed-up measured without synchronising
# the device can be a measurement of how fast Python queues work, and a plan priced on it
# (chapter 1's cost per million tokens) is off by the same factor. Both checks take
# seconds; the GPU-hours they protect cost dollars each.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false}
import json
import math
import statistics
import time

import course_config
from llmopt import doctor
from llmopt.fakegpu import FakeGPU

SMALL = course_config.SMALL_WORKLOAD  # True under `make test`: shorter measurements

# %% [markdown]
# ## 1. What the machine says about its GPUs
# ### 1. 读取GPU信息：nvidia-smi
#
# `nvidia-smi` (the NVIDIA driver's command-line tool) answers machine-readable queries:
# `nvidia-smi --query-gpu=FIELD,FIELD,... --format=csv` prints a header line naming the
# fields (with their unit in brackets, such as `memory.total [MiB]`) and one line per
# GPU [@nvidia-smi-manual]. `--format=csv,nounits` drops the units from the values (the
# header keeps them), and a field the GPU cannot report prints `[N/A]` or
# `[Not Supported]`. The doctor asks for these fields:

# %%
print("nvidia-smi --query-gpu=" + ",".join(doctor.GPU_QUERY_FIELDS) + " --format=csv")

# %% [markdown]
# Here is what such a query prints on an 8-GPU H200 node and on an A100 split into MIG
# instances (Multi-Instance GPU: one card partitioned into isolated slices, each with its
# own share of memory and SMs). Both outputs are written in `nvidia-smi`'s format for this
# chapter, not copied from a machine; the hidden tests use more of them, including broken
# machines.

# %% nbgrader={"grade": false, "grade_id": "gpu_query_data", "locked": true, "schema_version": 3, "solution": false}
H200_NODE = """index, name, driver_version, memory.total [MiB], memory.used [MiB], compute_cap, mig.mode.current
""" + "".join(f"{i}, NVIDIA H200, 570.133.20, 143771 MiB, {1 + 7 * i} MiB, 9.0, Disabled\n" for i in range(8))

A100_MIG = """name, memory.total [MiB], driver_version, mig.mode.current, compute_cap
NVIDIA A100-SXM4-80GB, 81920, 535.161.08, Enabled, 8.0
"""  # another column order, and --format=csv,nounits

NO_DRIVER = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. " \
            "Make sure that the latest NVIDIA driver is installed and running.\n"

# %% [markdown]
# **Exercise 1 · 练习1.** Write `parse_gpu_query(text)`. It returns one dict per GPU line,
# with exactly these keys, each `None` where the query did not ask for it or the GPU did
# not report it (`[N/A]`, `[Not Supported]`):
#
# | key | from the column | type |
# |---|---|---|
# | `index` | `index` | int |
# | `name` | `name` | str |
# | `driver_version` | `driver_version` | str, as printed (`"570.133.20"`) |
# | `memory_total_mib` | `memory.total` | int MiB, with or without the ` MiB` unit |
# | `memory_used_mib` | `memory.used` | int MiB |
# | `compute_capability` | `compute_cap` | tuple of two ints, `"9.0"` → `(9, 0)` |
# | `mig_enabled` | `mig.mode.current` | bool: `"Enabled"` → True, `"Disabled"` → False |
#
# Find the columns by the header's names, never by their position: the order is whatever
# the query asked for. Spaces around values do not count; blank lines are ignored. Raise
# `ValueError`, with a message quoting what was read, when the first line is not a
# header with a `name` column (nvidia-smi printed an error instead) or a GPU line has a
# different number of fields than the header.

# %% nbgrader={"grade": false, "grade_id": "parse_gpu_query_solution", "locked": false, "schema_version": 3, "solution": true}
GPU_KEYS = ("index", "name", "driver_version", "memory_total_mib", "memory_used_mib",
            "compute_capability", "mig_enabled")


def parse_gpu_query(text: str) -> list[dict]:
    """One dict per GPU (keys GPU_KEYS) from `nvidia-smi --query-gpu=... --format=csv[,nounits]`."""
    ### BEGIN SOLUTION
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("nvidia-smi printed nothing: no header, no GPU")
    header = [field.split("[")[0].strip() for field in lines[0].split(",")]
    if "name" not in header:
        raise ValueError(f"not nvidia-smi CSV (no 'name' column in the first line): {lines[0][:120]!r}")

    def number(value: str) -> int:
        return int(value.split()[0])  # "81559 MiB" or "81559"

    convert = {
        "index": ("index", int),
        "name": ("name", str),
        "driver_version": ("driver_version", str),
        "memory.total": ("memory_total_mib", number),
        "memory.used": ("memory_used_mib", number),
        "compute_cap": ("compute_capability", lambda v: tuple(int(x) for x in v.split("."))),
        "mig.mode.current": ("mig_enabled", lambda v: {"enabled": True, "disabled": False}[v.lower()]),
    }
    gpus = []
    for line in lines[1:]:
        values = [value.strip() for value in line.split(",")]
        if len(values) != len(header):
            raise ValueError(f"{len(values)} fields for a header of {len(header)}: {line[:120]!r}")
        gpu = dict.fromkeys(GPU_KEYS)
        for field, value in zip(header, values):
            if field in convert and value not in ("[N/A]", "[Not Supported]", "N/A", ""):
                key, parse = convert[field]
                gpu[key] = parse(value)
        gpus.append(gpu)
    return gpus
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "parse_gpu_query", "locked": true, "points": 4, "schema_version": 3, "solution": false}
gpus = parse_gpu_query(H200_NODE)
assert len(gpus) == 8, f"the H200 node has 8 GPU lines, got {len(gpus)} dicts"
assert set(gpus[0]) == set(GPU_KEYS), f"each dict has exactly the keys {GPU_KEYS}, got {sorted(gpus[0])}"
assert gpus[3] == {"index": 3, "name": "NVIDIA H200", "driver_version": "570.133.20",
                   "memory_total_mib": 143771, "memory_used_mib": 22, "compute_capability": (9, 0),
                   "mig_enabled": False}, f"GPU 3 parsed as {gpus[3]}"
(a100,) = parse_gpu_query(A100_MIG)
assert a100["memory_total_mib"] == 81920 and a100["mig_enabled"] is True, \
    f"find columns by the header's names (this query has another order): got {a100}"
assert a100["index"] is None and a100["memory_used_mib"] is None, "columns not asked for are None"
try:
    parse_gpu_query(NO_DRIVER)
except ValueError as error:
    print("ValueError as expected:", error)
else:
    raise AssertionError("an nvidia-smi error message is not a GPU list: raise ValueError")
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch04_environment/parse_gpu_query")
### END HIDDEN TESTS

# %% [markdown]
# ## 2. Driver, CUDA runtime, PyTorch: the compatibility matrix
# ### 2. 兼容性矩阵：驱动、CUDA运行时与PyTorch
#
# Three versions meet on a GPU machine:
#
# - the **driver** (a kernel module plus `libcuda`, installed on the host: containers
#   share the host's), which `nvidia-smi` reports;
# - the **CUDA runtime** a program was built with: a PyTorch wheel carries its own, and
#   `torch.version.cuda` names it (`None` on a CPU-only build; the wheel's local version,
#   the `+cu128` in `2.9.0+cu128`, says the same);
# - the GPU's **compute capability** (9.0 for H100 and H200, 8.0 for A100 [@nvidia-cuda-gpus]),
#   which the build must include kernels for.
#
# Each CUDA toolkit release needs a minimum driver, listed in NVIDIA's release notes
# [@nvidia-cuda-release-notes]. The table below holds the Linux x86_64 minimum of each
# release's first (GA) version. The driver is backward compatible: a newer driver runs an
# older runtime [@nvidia-cuda-release-notes]. Since CUDA
# 11 there is also **minor-version compatibility**: a runtime of major version 12 runs on
# any driver at or above the 12.x family's floor, even one older than its own row, as long
# as the program uses no feature that needs the newer driver (PTX compiled just-in-time for
# a newer release is the usual casualty) [@nvidia-cuda-compat]. NVIDIA's current tables
# give these floors as driver branches only: at least 450 for 11.x, 525 for 12.x, 580 for
# 13.x, with 450.80.02 named as the exact Linux floor of 11.x
# [@nvidia-cuda-release-notes; @nvidia-cuda-compat]. The exact floors the table below uses for 12.x (525.60.13) and 13.x
# (580.65.06) are the GA rows of CUDA 12.0 and 13.0; 525.60.13 is also the 12.x figure that
# earlier editions of the table gave, read here only in third-party copies. Treat those two
# as values to check, not as NVIDIA's word. Installing a newer CUDA toolkit inside a
# container does not upgrade the driver: the container runs on the host's.

# %% nbgrader={"grade": false, "grade_id": "cuda_matrix_data", "locked": true, "schema_version": 3, "solution": false}
# CUDA toolkit release -> minimum Linux x86_64 driver of its GA release [@nvidia-cuda-release-notes]
CUDA_MIN_DRIVER = {
    "11.8": "520.61.05",
    "12.0": "525.60.13",
    "12.1": "530.30.02",
    "12.2": "535.54.03",
    "12.3": "545.23.06",
    "12.4": "550.54.14",
    "12.5": "555.42.02",
    "12.6": "560.28.03",
    "12.8": "570.26",
    "12.9": "575.51.03",
    "13.0": "580.65.06",
}
# CUDA major version -> the lowest driver that runs any runtime of that major version through
# minor-version compatibility [@nvidia-cuda-compat]. NVIDIA states 450.80.02 exactly; for 12.x
# and 13.x it gives only the branch (525, 580): the GA drivers of CUDA 12.0 and 13.0 stand in.
MINOR_COMPAT_MIN_DRIVER = {"11": "450.80.02", "12": "525.60.13", "13": "580.65.06"}

# %% [markdown]
# Versions are dotted numbers, and they compare number by number: driver `570.124.06` is
# newer than `570.26` (124 > 26), although as strings `"570.124.06" < "570.26"`, and as
# floats 570.124 < 570.26. Both wrong comparisons have shipped in real tools.
#
# **Exercise 2 · 练习2.** Write two functions.
#
# - `cuda_supported_by_driver(driver_version)` returns the highest CUDA release of
#   `CUDA_MIN_DRIVER` (its key, a string such as `"12.8"`) whose minimum driver is at most
#   `driver_version`, or `None` when the driver is older than every row.
# - `check_torch_cuda(driver_version, torch_cuda)` returns a `(status, reason)` tuple for a
#   PyTorch build with CUDA runtime `torch_cuda` (`torch.version.cuda`, e.g. `"12.8"`) on a
#   host whose driver is `driver_version` (from `nvidia-smi`):
#   - `"blocked"` when `driver_version` is `None` (no NVIDIA driver: nothing to check);
#   - `"fail"` when `torch_cuda` is `None`: a CPU-only PyTorch on a GPU machine;
#   - `"pass"` when the driver supports a release at least as new as `torch_cuda`;
#   - `"warn"` when it does not, but the driver is at or above the minor-version
#     compatibility floor of `torch_cuda`'s major version (it runs; newer features may not);
#   - `"fail"` otherwise (the runtime will not initialise: upgrade the driver).
#
#   The reason is one sentence that names both versions.

# %% nbgrader={"grade": false, "grade_id": "compatibility_solution", "locked": false, "schema_version": 3, "solution": true}
def version_tuple(version: str) -> tuple[int, ...]:
    """"570.124.06" -> (570, 124, 6): dotted versions compare number by number."""
    ### BEGIN SOLUTION
    return tuple(int(part) for part in version.strip().split("."))
    ### END SOLUTION


def cuda_supported_by_driver(driver_version: str) -> str | None:
    """The newest CUDA release in CUDA_MIN_DRIVER that `driver_version` supports, or None."""
    ### BEGIN SOLUTION
    driver = version_tuple(driver_version)
    supported = [cuda for cuda, minimum in CUDA_MIN_DRIVER.items() if version_tuple(minimum) <= driver]
    return max(supported, key=version_tuple, default=None)
    ### END SOLUTION


def check_torch_cuda(driver_version: str | None, torch_cuda: str | None) -> tuple[str, str]:
    """("pass" | "warn" | "fail" | "blocked", reason) for torch's CUDA runtime on this driver."""
    ### BEGIN SOLUTION
    if driver_version is None:
        return "blocked", "no NVIDIA driver on this machine: nothing to check"
    if torch_cuda is None:
        return "fail", f"a CPU-only PyTorch build on a machine with NVIDIA driver {driver_version}"
    newest = cuda_supported_by_driver(driver_version)
    if newest is not None and version_tuple(newest) >= version_tuple(torch_cuda):
        return "pass", f"driver {driver_version} supports CUDA up to {newest}, torch needs {torch_cuda}"
    floor = MINOR_COMPAT_MIN_DRIVER.get(torch_cuda.split(".")[0])
    if floor is not None and version_tuple(driver_version) >= version_tuple(floor):
        return "warn", (f"driver {driver_version} is older than CUDA {torch_cuda} needs, and runs it only "
                        f"through minor-version compatibility (floor {floor}): upgrade for new features")
    return "fail", (f"driver {driver_version} cannot run torch's CUDA {torch_cuda} runtime"
                    + (f" (it needs >= {floor})" if floor else "") + ": upgrade the host driver")
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "compatibility", "locked": true, "points": 4, "schema_version": 3, "solution": false}
assert version_tuple("570.124.06") == (570, 124, 6), "split on dots, compare integers"
assert cuda_supported_by_driver("570.124.06") == "12.8", \
    "570.124.06 >= 570.26 (124 > 26 as numbers), so it runs CUDA 12.8, not 13.0"
assert cuda_supported_by_driver("580.95.05") == "13.0"
assert cuda_supported_by_driver("470.82.01") is None, "older than every row of the table"
assert check_torch_cuda("580.95.05", "12.8")[0] == "pass", "a newer driver runs an older runtime"
assert check_torch_cuda("535.161.08", "12.8")[0] == "warn", "12.8 on an R535 driver: minor-version compatibility"
assert check_torch_cuda("550.54.15", "13.0")[0] == "fail", "CUDA 13 needs an R580 driver"
assert check_torch_cuda(None, "12.8")[0] == "blocked"
assert check_torch_cuda("570.133.20", None)[0] == "fail"
for driver, cuda in (("580.95.05", "12.8"), ("535.161.08", "12.8"), ("550.54.15", "13.0")):
    print(f"driver {driver}, torch CUDA {cuda}: {check_torch_cuda(driver, cuda)}")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch04_environment/compatibility")
### END HIDDEN TESTS

# %% [markdown]
# ## 3. vLLM's pins
# ### 3. vLLM的版本约束
#
# A serving engine is compiled against one PyTorch: its CUDA kernels link against
# PyTorch's C++ ABI, which changes between releases, so the wheel pins it exactly. The
# vLLM 0.33.0 wheel pins `torch==2.14.0` and `flashinfer-python==0.7.2.post1` and needs
# Python 3.11 to 3.14 [@vllm-0-33-wheel]. It also picks an attention backend, and each
# backend compiles kernels for some head sizes only: FlashAttention takes head sizes that
# are multiples of 8 up to 256, FlashInfer only 64, 128, 256 and 512
# [@vllm-0-33-wheel]. The course model's heads have 32 dimensions: FlashAttention serves
# it, FlashInfer cannot. That is why the course's GPU image keeps vLLM in an environment
# of its own (`environment/requirements-vllm.txt`): its torch, Triton and transformers
# pins cannot sit in the course's own environment, and on a CPU machine vLLM is never
# installed, so every vLLM check there is *blocked*.

# %% nbgrader={"grade": false, "grade_id": "vllm_pins_data", "locked": true, "schema_version": 3, "solution": false}
# What the vLLM 0.33.0 wheel requires [@vllm-0-33-wheel]
VLLM_PINS = {"vllm": "0.33.0", "torch": "2.14.0", "flashinfer-python": "0.7.2.post1",
             "python_min": (3, 11), "python_max": (3, 14)}
FLASH_ATTN_MAX_HEAD_SIZE = 256  # FlashAttention backend: multiples of 8 up to this
FLASHINFER_HEAD_SIZES = (64, 128, 256, 512)  # FlashInfer backend: these only

# %% [markdown]
# **Exercise 3 · 练习3.** Write `check_vllm(facts)`. `facts` is a dict with the keys
# `"vllm"`, `"python"`, `"torch"`, `"flashinfer"` (installed versions as strings, `None`
# where not installed; torch's may carry a local part such as `"2.14.0+cu130"`),
# `"head_dim"` (an int) and `"attention_backend"` (`"FLASH_ATTN"` or `"FLASHINFER"`). It
# returns a dict with exactly the keys `"python"`, `"torch"`, `"flashinfer"` and
# `"attention"`, each a `(status, reason)` tuple:
#
# - all four `"blocked"` when vLLM is not installed;
# - all four `"warn"` when a vLLM other than `VLLM_PINS["vllm"]` is installed (the pins
#   here are that release's; say so in the reason);
# - otherwise: `"python"` passes for versions `python_min` to `python_max` inclusive
#   (compare major and minor only) and fails outside; `"torch"` passes when its version
#   without the local part (`+...`) equals the pin, and fails otherwise; `"flashinfer"`
#   passes when it equals its pin, warns when it is not installed (the FlashInfer backend
#   is then unavailable, the others still work) and fails on another version;
#   `"attention"` passes when the backend supports `head_dim`, and fails otherwise. An
#   unknown backend name raises `ValueError`.

# %% nbgrader={"grade": false, "grade_id": "vllm_pins_solution", "locked": false, "schema_version": 3, "solution": true}
def check_vllm(facts: dict) -> dict:
    """{"python" | "torch" | "flashinfer" | "attention": (status, reason)} against VLLM_PINS."""
    ### BEGIN SOLUTION
    keys = ("python", "torch", "flashinfer", "attention")
    backend, head_dim = facts["attention_backend"], facts["head_dim"]
    if backend not in ("FLASH_ATTN", "FLASHINFER"):
        raise ValueError(f"unknown attention backend {backend!r}: FLASH_ATTN or FLASHINFER")
    if facts["vllm"] is None:
        return {key: ("blocked", "vLLM is not installed here (a CPU machine never has it)") for key in keys}
    if facts["vllm"] != VLLM_PINS["vllm"]:
        return {key: ("warn", f"vllm {facts['vllm']} is installed; these pins are vllm "
                      f"{VLLM_PINS['vllm']}'s: read that release's requirements") for key in keys}
    python = tuple(int(x) for x in facts["python"].split(".")[:2])
    low, high = VLLM_PINS["python_min"], VLLM_PINS["python_max"]
    result = {"python": ("pass", f"Python {facts['python']}") if low <= python <= high else
              ("fail", f"Python {facts['python']}: vLLM {VLLM_PINS['vllm']} needs {low[0]}.{low[1]} "
                       f"to {high[0]}.{high[1]}")}
    torch_version = (facts["torch"] or "").split("+")[0]
    result["torch"] = (("pass", f"torch {facts['torch']}") if torch_version == VLLM_PINS["torch"] else
                       ("fail", f"torch {facts['torch']}: vLLM's kernels are built for torch=="
                                f"{VLLM_PINS['torch']} exactly"))
    flashinfer = facts["flashinfer"]
    result["flashinfer"] = (
        ("pass", f"flashinfer-python {flashinfer}") if flashinfer == VLLM_PINS["flashinfer-python"] else
        ("warn", "flashinfer-python is not installed: the FlashInfer backend is unavailable")
        if flashinfer is None else
        ("fail", f"flashinfer-python {flashinfer}: vLLM pins {VLLM_PINS['flashinfer-python']}"))
    if backend == "FLASH_ATTN":
        ok = head_dim % 8 == 0 and 0 < head_dim <= FLASH_ATTN_MAX_HEAD_SIZE
        rule = f"multiples of 8 up to {FLASH_ATTN_MAX_HEAD_SIZE}"
    else:
        ok, rule = head_dim in FLASHINFER_HEAD_SIZES, f"only {FLASHINFER_HEAD_SIZES}"
    result["attention"] = ("pass" if ok else "fail", f"{backend} with head size {head_dim} (it takes {rule})")
    return result
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "vllm_pins", "locked": true, "points": 3, "schema_version": 3, "solution": false}
GOOD_VLLM_NODE = {"vllm": "0.33.0", "python": "3.12.9", "torch": "2.14.0+cu130", "flashinfer": "0.7.2.post1",
                  "head_dim": 128, "attention_backend": "FLASHINFER"}
result = check_vllm(GOOD_VLLM_NODE)
assert set(result) == {"python", "torch", "flashinfer", "attention"}, f"four keys, got {sorted(result)}"
assert all(status == "pass" for status, _ in result.values()), f"a node that meets every pin: {result}"
assert check_vllm({**GOOD_VLLM_NODE, "head_dim": 32})["attention"][0] == "fail", \
    "FlashInfer has no kernels for head size 32 (the course model's)"
assert check_vllm({**GOOD_VLLM_NODE, "head_dim": 32, "attention_backend": "FLASH_ATTN"})["attention"][0] == "pass"
assert check_vllm({**GOOD_VLLM_NODE, "vllm": None})["torch"][0] == "blocked"
assert check_vllm({**GOOD_VLLM_NODE, "python": "3.10.14"})["python"][0] == "fail"
for key, (status, reason) in check_vllm({**GOOD_VLLM_NODE, "torch": "2.13.0+cu128", "flashinfer": None}).items():
    print(f"{status:<8} {key:<11} {reason}")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch04_environment/vllm_pins")
### END HIDDEN TESTS

# %% [markdown]
# ### The doctor on this machine and on recorded ones · 在本机与记录的机器上运行诊断
#
# `python -m llmopt.doctor` probes the machine (versions, `nvidia-smi`, memory, disk) and
# runs the checks that need no judgement. Your three functions plug into the same runner as
# checks: each takes the probed facts and returns `(status, name, reason)` lines.

# %%
def gpu_checks(facts: dict) -> list[tuple[str, str, str]]:
    """Exercises 1 and 2 as doctor checks."""
    if facts.get("nvidia_smi") is None:
        return [("blocked", "driver vs torch CUDA", "no nvidia-smi output: no GPU to check")]
    gpus = parse_gpu_query(facts["nvidia_smi"])
    lines = [("warn" if gpu["mig_enabled"] else "pass", f"GPU {i}",
              f"{gpu['name']}, {gpu['memory_total_mib']} MiB, compute capability {gpu['compute_capability']}"
              + (": MIG is on, a process sees one slice, not the card" if gpu["mig_enabled"] else ""))
             for i, gpu in enumerate(gpus)]
    status, reason = check_torch_cuda(gpus[0]["driver_version"], facts.get("torch_cuda"))
    return lines + [(status, "driver vs torch CUDA", reason)]


def vllm_checks(facts: dict) -> list[tuple[str, str, str]]:
    """Exercise 3 as a doctor check, for the course model's head size on FlashAttention."""
    packages = facts.get("packages", {})
    result = check_vllm({"vllm": packages.get("vllm"), "python": facts["python"], "torch": packages.get("torch"),
                         "flashinfer": packages.get("flashinfer-python"), "head_dim": facts["head_dim"],
                         "attention_backend": "FLASH_ATTN"})
    return [(status, f"vLLM {key}", reason) for key, (status, reason) in result.items()]


CHECKS = [*doctor.BUILTIN_CHECKS, gpu_checks, vllm_checks]
here = doctor.probe()
print(doctor.report(doctor.run(CHECKS, here)))

# %% [markdown]
# On this course's CPU machine the GPU and vLLM lines are *blocked*, not failed: nothing
# is wrong, the hardware is absent. The same checks on facts recorded from other
# machines (written for this chapter in the format `probe()` returns):

# %%
RECORDED = {
    "H200 node, image in order": {**here, "torch_cuda": "12.8", "cuda_available": True, "nvidia_smi": H200_NODE,
                                  "packages": {**here["packages"], "torch": "2.14.0+cu128", "vllm": "0.33.0",
                                               "flashinfer-python": "0.7.2.post1"}},
    "A100 with MIG, R535 driver": {**here, "torch_cuda": "12.8", "cuda_available": True, "nvidia_smi": A100_MIG,
                                   "packages": {**here["packages"], "vllm": None}},
    "old driver, CUDA 13 image": {**here, "torch_cuda": "13.0", "cuda_available": True,
                                  "nvidia_smi": H200_NODE.replace("570.133.20", "550.54.15"),
                                  "packages": {**here["packages"], "torch": "2.13.0+cu130", "vllm": "0.33.0",
                                               "flashinfer-python": None}},
}
for machine, facts in RECORDED.items():
    lines = [line for line in doctor.run([gpu_checks, vllm_checks], facts) if not line.name.startswith("GPU ")
             or line.name == "GPU 0"]
    print(f"== {machine}\n{doctor.report(lines)}\n")

# %% [markdown]
# ## 4. A benchmark harness that tells the truth
# ### 4. 正确的基准测试框架
#
# A CUDA kernel launch returns to Python before the GPU has run the kernel: the host
# queues work and moves on. A timer read right after the call therefore measures the
# launch, not the work; the host must wait for the device (`torch.cuda.synchronize()`)
# before it reads the clock, and also before it starts it, or work queued earlier is
# billed to the call being timed [@nvidia-cuda-best-practices]. The first calls of a
# function also pay one-off costs (compilation, autotuning, allocation, caches warming),
# and a repeat now and then is slowed by something else on the machine. The rules follow:
#
# 1. **warm up**: call the function a few times untimed, then synchronise;
# 2. **synchronise on both sides** of every timed call;
# 3. report the **median** of the repeats, not the mean, which one slow repeat can drag
#    anywhere;
# 4. report the **noise** next to it with a statistic that outliers do not dominate: the
#    median absolute deviation, $\text{MAD} = \text{median}_i\,|x_i - \text{median}(x)|$,
#    as a fraction of the median.
#
# So that every bug can be shown exactly on a CPU, `llmopt.fakegpu.FakeGPU` simulates an
# asynchronous device on a virtual clock: `kernel()` queues `kernel_s` seconds of work
# and returns after `launch_s`, the first call compiles for `compile_s`, `synchronize()`
# waits for the queue, `clock()` is the host's clock, and `outliers` slows chosen calls.

# %%
gpu = FakeGPU(kernel_s=2e-3, launch_s=1e-5, compile_s=0.3)
t0 = gpu.clock(); gpu.kernel(); print(f"first call, no sync: {gpu.clock() - t0:.6f} s (compilation + launch)")
t0 = gpu.clock(); gpu.kernel(); print(f"second call, no sync: {gpu.clock() - t0:.6f} s (the launch only)")
gpu.synchronize(); t0 = gpu.clock(); gpu.kernel(); gpu.synchronize()
print(f"synchronised on both sides: {gpu.clock() - t0:.6f} s (launch + kernel)")

# %% [markdown]
# **Exercise 4 · 练习4.** Write the harness in two parts.
#
# - `time_calls(fn, *, synchronize, clock, warmup=3, repeats=10)` calls `fn()` `warmup`
#   times untimed, then `repeats` times timed, and returns the list of the `repeats`
#   durations in seconds, in call order. `synchronize()` waits for the device; `clock()`
#   reads the time. Every timed call is bracketed by a synchronize before the clock starts
#   and one before it stops. `fn` is called exactly `warmup + repeats` times. Raise
#   `ValueError` when `warmup < 0` or `repeats < 1`.
# - `summarize(samples)` returns `{"median_s": ..., "mad_s": ..., "relative_noise": ...}`:
#   the median, the median absolute deviation from it, and MAD / median. Raise
#   `ValueError` on an empty list.

# %% nbgrader={"grade": false, "grade_id": "harness_solution", "locked": false, "schema_version": 3, "solution": true}
def time_calls(fn, *, synchronize, clock, warmup: int = 3, repeats: int = 10) -> list[float]:
    """Seconds of each of `repeats` calls of fn(), after `warmup` untimed calls."""
    ### BEGIN SOLUTION
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        synchronize()  # work queued before this call is not this call's
        start = clock()
        fn()
        synchronize()  # the call's work is done, not merely queued
        samples.append(clock() - start)
    return samples
    ### END SOLUTION


def summarize(samples: list[float]) -> dict:
    """{"median_s", "mad_s", "relative_noise"} of the timed samples."""
    ### BEGIN SOLUTION
    if len(samples) == 0:
        raise ValueError("no samples to summarize")
    median = statistics.median(samples)
    mad = statistics.median(abs(x - median) for x in samples)
    return {"median_s": median, "mad_s": mad, "relative_noise": mad / median if median > 0 else math.inf}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "harness", "locked": true, "points": 5, "schema_version": 3, "solution": false}
gpu = FakeGPU(kernel_s=2e-3, launch_s=1e-5, compile_s=0.3, outliers={5: 0.05})
samples = time_calls(gpu.kernel, synchronize=gpu.synchronize, clock=gpu.clock, warmup=2, repeats=8)
assert len(samples) == 8 and gpu.calls == 10, f"2 warm-up + 8 timed calls: got {len(samples)} samples, {gpu.calls} calls"
assert math.isclose(samples[0], 2.01e-3, rel_tol=1e-9), \
    f"each call is launch + kernel = 2.01 ms; the first sample is {samples[0] * 1e3:.4f} ms " \
    "(300 ms: no warm-up; 0.01 ms: no sync after; more than 2.01: no sync before)"
assert math.isclose(samples[3], 52.01e-3, rel_tol=1e-9), "call 5 (the 4th timed) is the slow one: keep it"
stats = summarize(samples)
assert math.isclose(stats["median_s"], 2.01e-3, rel_tol=1e-9), "the median ignores the one slow repeat"
assert stats["mad_s"] < 1e-9 and stats["relative_noise"] < 1e-6, "7 of 8 samples are equal: MAD is 0"
print(f"samples (ms): {[round(s * 1e3, 3) for s in samples]}")
print(f"median {stats['median_s'] * 1e3:.3f} ms, mean {statistics.mean(samples) * 1e3:.3f} ms")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch04_environment/harness")
### END HIDDEN TESTS

# %% [markdown]
# ### Measured: `transformers` `generate` against the course engine · 实测：transformers与课程引擎
#
# Now the harness on real work: greedy decoding of the course model, Hugging Face
# `generate` (with its KV cache) against the course engine (`llmopt.engine.Engine`, which
# recomputes the whole prefix at every step; chapter 5 adds its cache). First both must
# produce the same tokens: a speed comparison of different outputs means nothing. On the
# CPU, `synchronize` does nothing and `time.perf_counter` is the clock; on a GPU the same
# code synchronises CUDA.

# %%
import platform

import torch

from llmopt.device import default_device, synchronize
from llmopt.engine import Engine
from llmopt.models import load_model

device = default_device()
model = load_model("course-lm").to(device)
engine = Engine.from_model(model)
engine.eos_token_id = None  # both decode exactly NEW_TOKENS tokens
PROMPT_TOKENS, NEW_TOKENS, REPEATS = 32, (8 if SMALL else 32), (3 if SMALL else 7)
prompt = torch.randint(3, model.config.vocab_size, (1, PROMPT_TOKENS),
                       generator=torch.Generator().manual_seed(0)).to(device)


@torch.no_grad()
def hf_generate():
    return model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                          max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                          pad_token_id=model.generation_config.pad_token_id)


@torch.no_grad()
def engine_generate():
    return engine.generate(prompt, max_new_tokens=NEW_TOKENS)


same_tokens = torch.equal(hf_generate(), engine_generate())
print(f"device {device} ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads; "
      f"prompt {PROMPT_TOKENS} tokens, {NEW_TOKENS} new tokens; identical tokens: {same_tokens}")
assert same_tokens, "the two must agree token for token before their speeds are compared"
sync = lambda: synchronize(device)  # noqa: E731
timings = {}
for name, fn in (("transformers generate", hf_generate), ("course engine", engine_generate)):
    timings[name] = summarize(time_calls(fn, synchronize=sync, clock=time.perf_counter, warmup=1,
                                         repeats=REPEATS))
    t = timings[name]
    print(f"{name:<22} median {t['median_s'] * 1e3:8.1f} ms = {NEW_TOKENS / t['median_s']:6.1f} tok/s, "
          f"noise (MAD/median) {t['relative_noise']:.1%}")
engine_speedup = timings["transformers generate"]["median_s"] / timings["course engine"]["median_s"]
print(f"engine / transformers speed: {engine_speedup:.2f}x")

# %% [markdown]
# The engine recomputes the whole prefix at every step while `generate` keeps a KV cache,
# so expect the engine to lose here, and by more the longer the output; chapter 5 gives it
# a cache. Read the noise before the ratio: on a shared 2-core machine several percent is
# usual, and a difference smaller than the noise is no difference. Timing the two one after the other
# also lets a slow drift (another process starting) favour one side; `llmopt.bench.compare`
# interleaves the calls in pairs and takes the median of the per-pair ratios, which is
# what the grader does for every speed test of the course.
#
# ## 5. A benchmark client for an OpenAI-compatible endpoint
# ### 5. OpenAI兼容接口的基准测试客户端
#
# A served model is measured from the outside, as its users see it: send a request, read
# the streamed answer, note when each piece arrives. OpenAI-compatible servers (vLLM's
# `vllm serve` included) stream a completion as server-sent events: lines of
# `data: {json}`, one chunk of text in `choices[0].text` (for the chat endpoint in
# `choices[0].delta.content`), then `data: [DONE]`, with blank lines between events and
# comment lines starting with `:` (keep-alives) anywhere. Two latencies matter
# (chapter 6 defines them): **TTFT**, from sending the request to the first piece of text,
# and **TPOT**, the mean gap between output tokens after the first.
#
# Two details decide whether the numbers are right. Servers often send something before
# any text (headers, a comment, a chunk with empty text; the chat endpoint first sends the
# role): the TTFT clock stops at the first chunk that carries text. And a chunk is not a
# token: a detokenizer may hold a token back until the next completes a character, so
# one chunk can carry two tokens. TPOT therefore divides by the number of output tokens
# (the server's usage count, or `max_tokens` when the request ran to its length), not by
# the number of chunks.
#
# `llmopt.mini_server` serves the course engine this way on 127.0.0.1 (standard library
# only, one request decoding at a time: chapter 9 builds the real endpoint), and
# `llmopt.mini_server.stream_completion` sends one request and returns the raw lines
# with their arrival times, unparsed. Here is the beginning of one such stream:

# %%
from llmopt import mini_server
from llmopt.models import load_tokenizer

tokenizer = load_tokenizer("course-lm")
server = mini_server.start(engine, tokenizer)
sent_at, stream = mini_server.stream_completion(server.url, "def main(argv):\n    ", max_tokens=8)
for arrival, line in stream[:7]:
    print(f"+{(arrival - sent_at) * 1e3:7.2f} ms  {line[:100]!r}")

# %% [markdown]
# **Exercise 5 · 练习5.** Write `stream_metrics(sent_s, events, output_tokens)`. `events`
# is a list of `(arrival_s, line)` in arrival order, on the same clock as `sent_s`;
# `output_tokens` is the number of tokens the answer holds. Return a dict with exactly:
#
# - `"text"`: the answer, every chunk's text joined in order;
# - `"ttft_s"`: the arrival of the first chunk with non-empty text, minus `sent_s`;
# - `"e2e_s"`: the arrival of the last chunk with non-empty text, minus `sent_s`;
# - `"tpot_s"`: (last text arrival − first text arrival) / (`output_tokens` − 1), or 0.0
#   when `output_tokens` is 1.
#
# Only lines that start with `data:` are events; `data: [DONE]` ends the answer; other
# lines (blank, `:` comments, `event:` fields) are skipped. A chunk's text is
# `choices[0]["text"]`, or `choices[0]["delta"]["content"]` where there is no `"text"`
# (missing or `None` means empty). Raise `ValueError` when no chunk carries text or
# `output_tokens` < 1.

# %% nbgrader={"grade": false, "grade_id": "stream_metrics_solution", "locked": false, "schema_version": 3, "solution": true}
def stream_metrics(sent_s: float, events: list, output_tokens: int) -> dict:
    """{"text", "ttft_s", "e2e_s", "tpot_s"} of one streamed completion."""
    ### BEGIN SOLUTION
    if output_tokens < 1:
        raise ValueError(f"output_tokens must be >= 1, got {output_tokens}")
    pieces, arrivals = [], []
    for arrival, line in events:
        if not line.startswith("data:"):
            continue  # blank separators, ": keep-alive" comments, "event:" fields
        payload = line[len("data:"):].strip()
        if payload == "[DONE]":
            break
        choice = json.loads(payload)["choices"][0]
        text = choice["text"] if "text" in choice else (choice.get("delta") or {}).get("content")
        if text:
            pieces.append(text)
            arrivals.append(arrival)
    if not arrivals:
        raise ValueError("no chunk of the stream carries text")
    return {"text": "".join(pieces), "ttft_s": arrivals[0] - sent_s, "e2e_s": arrivals[-1] - sent_s,
            "tpot_s": (arrivals[-1] - arrivals[0]) / (output_tokens - 1) if output_tokens > 1 else 0.0}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "stream_metrics", "locked": true, "points": 4, "schema_version": 3, "solution": false}
RECORDED_STREAM = [  # sent at t = 10.0 s; a comment, an empty chunk, 3 chunks holding 4 tokens
    (10.010, ": ok"), (10.010, ""),
    (10.011, 'data: {"choices": [{"index": 0, "text": "", "finish_reason": null}]}'), (10.011, ""),
    (10.200, 'data: {"choices": [{"index": 0, "text": "def", "finish_reason": null}]}'), (10.200, ""),
    (10.250, 'data: {"choices": [{"index": 0, "text": " main", "finish_reason": null}]}'), (10.250, ""),
    (10.350, 'data: {"choices": [{"index": 0, "text": "():", "finish_reason": "length"}]}'), (10.350, ""),
    (10.351, "data: [DONE]"), (10.351, ""),
]
metrics = stream_metrics(10.0, RECORDED_STREAM, output_tokens=4)
assert set(metrics) == {"text", "ttft_s", "e2e_s", "tpot_s"}, f"four keys, got {sorted(metrics)}"
assert metrics["text"] == "def main():", f"joined text: {metrics['text']!r}"
assert math.isclose(metrics["ttft_s"], 0.200), \
    f"TTFT is 200 ms, to the first chunk with text (got {metrics['ttft_s'] * 1e3:.1f} ms)"
assert math.isclose(metrics["e2e_s"], 0.350), f"e2e {metrics['e2e_s'] * 1e3:.1f} ms, expected 350"
assert math.isclose(metrics["tpot_s"], 0.150 / 3), \
    f"TPOT: 150 ms over 4 - 1 = 3 gaps between tokens (got {metrics['tpot_s'] * 1e3:.1f} ms)"
live = stream_metrics(sent_at, stream, output_tokens=8)
print(f"live stream: {live['text']!r}; TTFT {live['ttft_s'] * 1e3:.1f} ms, TPOT {live['tpot_s'] * 1e3:.1f} ms")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch04_environment/stream_metrics")
### END HIDDEN TESTS

# %% [markdown]
# ### A small trace, one client and two · 小型负载：一个与两个并发客户端
#
# The client then replays a small trace: requests with prompts from the course's code
# corpus, first one after another, then from two client threads at once. This server
# decodes one request at a time, so a second client's request waits behind the first:
# its TTFT includes the queueing, while TPOT, the decoding speed, stays about the same.
# Aggregate throughput is output tokens over the wall time of the whole run.

# %%
from concurrent.futures import ThreadPoolExecutor

TRACE_PROMPTS = ["import os\n", "def parse(text):\n    ", "class Cache:\n    def get(self, key", "for line in",
                 "if __name__ == \"__main__\":\n    ", "    return sorted("][: 4 if SMALL else 6]
TRACE_TOKENS = 8 if SMALL else 16


def one_request(prompt: str) -> dict:
    sent, events = mini_server.stream_completion(server.url, prompt, max_tokens=TRACE_TOKENS)
    return stream_metrics(sent, events, output_tokens=TRACE_TOKENS)


for clients in (1, 2):
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(one_request, TRACE_PROMPTS))
    wall = time.perf_counter() - start
    ttfts = sorted(r["ttft_s"] for r in results)
    print(f"{clients} client(s), {len(results)} requests x {TRACE_TOKENS} tokens: "
          f"{len(results) * TRACE_TOKENS / wall:5.1f} tok/s aggregate; TTFT median "
          f"{statistics.median(ttfts) * 1e3:6.1f} ms, max {ttfts[-1] * 1e3:6.1f} ms; TPOT median "
          f"{statistics.median(r['tpot_s'] for r in results) * 1e3:5.1f} ms")
wrong_ttft = stream[0][0] - sent_at  # the first line that arrived: the ": ok" comment
print(f"TTFT of the first request at its first byte: {wrong_ttft * 1e3:.2f} ms; at its first text: "
      f"{stream_metrics(sent_at, stream, 8)['ttft_s'] * 1e3:.2f} ms")
server.shutdown()

# %% [markdown]
# The same client, pointed at `vllm serve` on a GPU (`vllm serve models/course-lm`, then the
# server's URL), measures vLLM; `make gpu-check` runs the differential that matters first,
# vLLM's greedy tokens against the engine's (*blocked* where vLLM is not installed).
#
# ## 6. Common pitfalls
# ### 6. 常见误区
#
# **1. Reading the clock without synchronising.** The loop below is the most common
# benchmark in the wild. On an asynchronous device it reports the launch time: 200× faster
# than the truth here.

# %%
gpu = FakeGPU(kernel_s=2e-3, launch_s=1e-5, compile_s=0.3)
gpu.kernel(); gpu.synchronize()  # warmed up
t0 = gpu.clock()
for _ in range(10):
    gpu.kernel()
naive = (gpu.clock() - t0) / 10
gpu.synchronize()
print(f"no sync: {naive * 1e3:.3f} ms per call; with sync: {(gpu.clock() - t0) / 10 * 1e3:.3f} ms per call")

# %% [markdown]
# **2. Timing the first call.** It pays compilation, autotuning or allocation once. A
# harness without warm-up folds that into the first sample, and a mean over a few repeats
# drags it into the answer:

# %%
gpu = FakeGPU(kernel_s=2e-3, launch_s=1e-5, compile_s=0.3)
cold = time_calls(gpu.kernel, synchronize=gpu.synchronize, clock=gpu.clock, warmup=0, repeats=5)
print(f"no warm-up, samples (ms): {[round(s * 1e3, 2) for s in cold]}; mean {statistics.mean(cold) * 1e3:.1f} ms, "
      f"median {statistics.median(cold) * 1e3:.2f} ms")

# %% [markdown]
# The same on real code: the first `generate` call of a freshly loaded model against the
# steady state measured above.

# %%
fresh = Engine.from_model(model)
fresh.eos_token_id = None
sync(); start = time.perf_counter(); fresh.generate(prompt, max_new_tokens=NEW_TOKENS); sync()
first_call = time.perf_counter() - start
print(f"first call {first_call * 1e3:.1f} ms vs steady median {timings['course engine']['median_s'] * 1e3:.1f} ms")

# %% [markdown]
# On this CPU the engine has little to compile, so the gap is small and noisy; on a GPU
# with `torch.compile` or Triton autotuning the first call can take seconds
# (`FakeGPU.compile_s` stands for it).
#
# **3. The mean of noisy repeats.** One repeat preempted by another process moves the mean
# by its whole excess over the number of repeats; the median does not move:

# %%
gpu = FakeGPU(kernel_s=2e-3, launch_s=1e-5, compile_s=0.3, outliers={4: 0.05})
noisy = time_calls(gpu.kernel, synchronize=gpu.synchronize, clock=gpu.clock, warmup=2, repeats=10)
print(f"mean {statistics.mean(noisy) * 1e3:.2f} ms (stdev {statistics.stdev(noisy) * 1e3:.2f}), "
      f"median {summarize(noisy)['median_s'] * 1e3:.2f} ms (MAD {summarize(noisy)['mad_s'] * 1e3:.2f})")

# %% [markdown]
# **4. Forgetting the synchronize before starting the clock.** Work still queued from the
# warm-up is billed to the first timed call:

# %%
gpu = FakeGPU(kernel_s=2e-3, launch_s=1e-5, compile_s=0.3)
for _ in range(3):
    gpu.kernel()  # warm-up, not waited for
start = gpu.clock(); gpu.kernel(); gpu.synchronize()
print(f"first timed call without a sync before: {(gpu.clock() - start) * 1e3:.2f} ms (truth: 2.01 ms)")

# %% [markdown]
# **5. Installing a CUDA toolkit in the image to fix an old driver.** The driver belongs
# to the host; a container brings only the runtime. `check_torch_cuda` fails the same way
# whatever toolkit the image carries:

# %%
print(check_torch_cuda("550.54.15", "13.0"))

# %% [markdown]
# **6. Comparing version strings as text.** `"570.124.06" >= "570.26"` is `False` in
# Python, and `float("570.124") < float("570.26")`; both answers are wrong:

# %%
print("as strings:", "570.124.06" >= "570.26", "| as numbers:", version_tuple("570.124.06") >= version_tuple("570.26"))

# %% [markdown]
# ## 7. Practice
# ### 7. 实践
#
# ### Practical checklist · 实战检查清单
#
# - [ ] `python -m llmopt.doctor` (with this chapter's checks) is clean on every new node and
#       image: no fail, and every warn read and accepted.
# - [ ] The host driver is at least the minimum of the image's CUDA runtime, not only its
#       minor-version floor, if the stack JIT-compiles PTX (Triton does).
# - [ ] The serving engine's pins (torch, FlashInfer, Python) are met exactly; it lives in
#       its own environment if they clash with yours.
# - [ ] The attention backend in the logs is the one you expect for the model's head size.
# - [ ] MIG is off on a card meant for one large model (or the slice is sized on purpose).
# - [ ] Every benchmark warms up, synchronises on both sides, reports the median with its
#       noise, and prints the hardware, the versions and the baseline in the same run.
# - [ ] Two systems are compared on identical outputs, interleaved, as a median of ratios.
# - [ ] A served model's TTFT stops at the first chunk with text, and TPOT divides by
#       tokens, not chunks; the load generator prints its concurrency beside them.
#
# ### ROI formula · ROI计算公式
#
# A speed-up $s$ measured between two stacks divides the cost per million tokens by $s$
# (chapter 1): $c_\text{after} = c_\text{before} / s$, and the monthly saving on $T$
# million tokens is $T\,c_\text{before}\,(1 - 1/s)$. A measurement error multiplies
# straight into it: a speed-up measured as $s_\text{measured} = k\,s_\text{true}$ promises
# savings the stack will never deliver, and the plan's error is the factor $k$. The cell
# prices the measured engine-vs-`transformers` ratio of this machine at an *assumed*
# GPU-hour price and throughput, next to the same ratio inflated by a missing
# synchronisation (pitfall 1's factor).

# %%
ASSUMED_GPU_HOURLY_USD = 2.50  # an assumption: your provider's price
ASSUMED_BASELINE_TOK_S = 1000.0  # an assumption: the baseline stack's aggregate throughput
cost_before = ASSUMED_GPU_HOURLY_USD / (ASSUMED_BASELINE_TOK_S * 3600) * 1e6
for label, s in (("measured correctly", engine_speedup), ("without sync (x200)", engine_speedup * 200)):
    print(f"{label:<20} speed-up {s:8.2f}x -> {cost_before / s:.4f} USD per 1M tokens (from {cost_before:.4f})")

# %% [markdown]
# ### Questions · 思考题
#
# Answer each question by returning a dict from its function (the grader computes the
# answers itself). The grader runs the answer cells with the setup, read-only and exercise
# cells only, not the demonstrations.
#
# **Question 1 · 思考题1 (an old driver).** A node's driver is `550.54.15`. The vLLM 0.33.0
# image's torch 2.14.0 was built for CUDA 13.0 (its resolved environment,
# `environment/requirements-vllm.txt`, pulls `nvidia-cuda-runtime==13.0.96`).
# (a) What does `check_torch_cuda` say: **A** pass, **B** warn, **C** fail, **D** blocked?
# (b) The fix: **A** install the CUDA 13.0 toolkit inside the container image; **B**
# upgrade the host's driver; **C** downgrade Python to 3.10; **D** set
# `CUDA_VISIBLE_DEVICES=0`. (c) The lowest driver branch (the number before the first dot)
# that runs any CUDA 13 runtime.

# %% nbgrader={"grade": false, "grade_id": "q_driver_solution", "locked": false, "schema_version": 3, "solution": true}
def question_1() -> dict:
    """{"status": (a) a letter, "fix": (b) a letter, "branch": (c) an int such as 470}."""
    ### BEGIN SOLUTION
    status = check_torch_cuda("550.54.15", "13.0")[0]
    return {"status": "ABCD"[("pass", "warn", "fail", "blocked").index(status)], "fix": "B",
            "branch": version_tuple(MINOR_COMPAT_MIN_DRIVER["13"])[0]}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q_driver", "locked": true, "points": 2, "schema_version": 3, "solution": false}
answers = question_1()
assert isinstance(answers, dict) and set(answers) == {"status", "fix", "branch"}, \
    "return a dict with the keys 'status', 'fix' and 'branch'"
assert answers["status"] in tuple("ABCD") and answers["fix"] in tuple("ABCD"), "(a) and (b): one letter, A to D"
assert isinstance(answers["branch"], int) and 300 < answers["branch"] < 1000, "(c) a driver branch such as 470"
print(answers)
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch04_environment/q_driver")
### END HIDDEN TESTS

# %% [markdown]
# **Question 2 · 思考题2 (what each harness reports).** A device runs each call in
# `Q2_KERNEL_S` = 4 ms after a launch of `Q2_LAUNCH_S` = 20 µs; its first call compiles for
# `Q2_COMPILE_S` = 0.5 s, and one call of 10 timed repeats is slowed by `Q2_OUTLIER_S` =
# 80 ms. Give, in **milliseconds**: (a) the time per call that a loop reports when it never
# synchronises (after warm-up); (b) the mean of the 10 correctly synchronised samples,
# after warm-up; (c) their median. (`FakeGPU` can compute them for you; 1 % tolerance.)

# %% nbgrader={"grade": false, "grade_id": "q_timing_data", "locked": true, "schema_version": 3, "solution": false}
Q2_KERNEL_S, Q2_LAUNCH_S, Q2_COMPILE_S, Q2_OUTLIER_S = 4e-3, 20e-6, 0.5, 80e-3

# %% nbgrader={"grade": false, "grade_id": "q_timing_solution", "locked": false, "schema_version": 3, "solution": true}
def question_2() -> dict:
    """{"no_sync_ms": (a), "mean_ms": (b), "median_ms": (c)}, all in milliseconds."""
    ### BEGIN SOLUTION
    per_call = Q2_LAUNCH_S + Q2_KERNEL_S
    return {"no_sync_ms": Q2_LAUNCH_S * 1e3, "mean_ms": (per_call + Q2_OUTLIER_S / 10) * 1e3,
            "median_ms": per_call * 1e3}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "q_timing", "locked": true, "points": 2, "schema_version": 3, "solution": false}
answers = question_2()
assert isinstance(answers, dict) and set(answers) == {"no_sync_ms", "mean_ms", "median_ms"}, \
    "return a dict with the keys 'no_sync_ms', 'mean_ms' and 'median_ms'"
assert all(isinstance(v, (int, float)) and v > 0 for v in answers.values()), "three positive numbers, in ms"
print({k: round(v, 4) for k, v in answers.items()})
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch04_environment/q_timing")
### END HIDDEN TESTS

# %% [markdown]
# ## Chapter summary · 本章小结
#
# - GPU 驱动属于宿主机，容器只携带 CUDA 运行时：驱动版本必须不低于 PyTorch 构建所用 CUDA 版本的最低要求；
#   仅满足同一主版本的"次版本兼容"下限时可以运行，但依赖新特性（如 PTX 即时编译）的代码可能失败。
# - 版本号要逐段按整数比较："570.124.06" 比 "570.26" 新，按字符串或浮点数比较都会得出错误结论。
# - vLLM 0.33.0 精确绑定 torch 2.14.0 与 flashinfer-python 0.7.2.post1，要求 Python 3.11–3.14；
#   注意力后端只支持特定的 head size：FlashAttention 为 8 的倍数且不超过 256，FlashInfer 仅支持 64/128/256/512。
#   课程模型的 head size 为 32，只能用 FlashAttention。
# - 没有 GPU 或没有安装 vLLM 时，相关检查是"blocked"（无法检查），而不是"fail"（确有问题）。
# - 正确的基准测试：先预热，计时前后都同步设备，取多次重复的中位数，并用 MAD/中位数报告噪声；
#   不同步只会测到内核启动时间，不预热会把编译时间算进去，均值会被一次异常的慢速重复拉偏。
# - 从外部测量服务：解析 OpenAI 兼容接口的流式输出（SSE），TTFT 应在第一个带文本的数据块到达时停止计时，
#   而不是在第一个字节或空数据块；TPOT 按 token 数（而非数据块数）计算；串行处理请求的服务器在并发时
#   TTFT 会因排队而增长，而 TPOT 基本不变。
# - 比较两个系统前先确认输出完全一致，再交错测量、取比值的中位数；测量误差会按同样的倍数传导到每百万 token 成本的估算中。
