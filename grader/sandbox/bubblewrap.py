"""The sandbox every process that runs student code starts in: bubblewrap (`bwrap`).

Student code gets, and can reach, exactly this:
- an unprivileged uid (65534, "nobody"): as root the grader starts bwrap without a user
  namespace and drops to that real uid with `setpriv` (no capabilities, no new
  privileges); as an ordinary user bwrap maps the caller's uid to 65534 in a user
  namespace;
- new pid, network, IPC, UTS and mount namespaces, its own session, and death with its
  parent: it sees no process but those of its own sandbox, no network, and nothing
  outlives the sandbox. One sandbox holds one submission's grading run (its zygote and
  the workers it forks, grader/student.py), or one baseline or reference worker alone;
- a read-only view of the system (/usr, /etc, /sys), the Python installation, the course's
  `.venv`, `llmopt/`, `course_config.py` and `models/`, plus the two worker files; a
  private tmpfs of SCRATCH_BYTES for /tmp and $HOME. Not `source/`, `solutions/`, `grader/` (suites), the
  gradebook, the course directory, or other submissions.

The rlimits set by the caller (memory, output size, processes) stay in force inside.
Where bwrap cannot start, grading stops with `SandboxUnavailable`, whose message says how
to fix it; only `GRADER_UNSAFE_NO_SANDBOX=1` (`python -m grader check --unsafe-no-sandbox`,
for a student's own laptop) runs workers unconfined, and says so loudly.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import course_config

SANDBOX_UID = 65534  # "nobody"
SCRATCH_BYTES = 512 << 20  # the private /tmp: files written there are held in memory
WORKER_DIR = "/opt/grader-worker"  # where worker.py and wire.py appear inside the sandbox
UNSAFE_ENV = "GRADER_UNSAFE_NO_SANDBOX"
HOW_TO_FIX = (
    "Student code is only ever run inside bubblewrap. Install it (Debian/Ubuntu: "
    "`apt-get install bubblewrap`; `make setup` does this when run as root) and make sure "
    "this machine allows new namespaces (a container needs e.g. `--security-opt "
    "seccomp=unconfined` or `--privileged`; as an ordinary user, unprivileged user "
    "namespaces must be enabled: `sysctl kernel.unprivileged_userns_clone=1`). On your own "
    "laptop only, `python -m grader check --unsafe-no-sandbox NOTEBOOK` grades without it."
)


class SandboxUnavailable(RuntimeError):
    """bwrap is missing or cannot create its namespaces here."""


def unsafe() -> bool:
    return os.environ.get(UNSAFE_ENV, "") not in ("", "0")


def _readonly_views() -> list[tuple[str, str]]:
    """(host path, path inside) the worker may read, read-only. Each appears at its real
    path and, when reached through a symlink (a linked `.venv`), at that path too."""
    root = course_config.ROOT
    paths = [Path("/usr"), Path("/etc"), Path("/sys"), Path(sys.base_prefix), Path(sys.prefix),
             root / "llmopt", root / "course_config.py", course_config.MODELS_DIR]
    views: list[tuple[str, str]] = []
    for path in paths:
        if not path.exists():
            continue
        real = str(path.resolve())
        for inside in dict.fromkeys([real, str(path.absolute())]):
            if not any(inside == v or inside.startswith(v + "/") for _, v in views):
                views.append((real, inside))
    return views


def visible_in_sandbox(path: Path) -> bool:
    """Whether `path` lies in what a sandbox shows student code (read-only): grading keeps
    what students must not read, such as a folder of verdicts, out of it."""
    real = Path(path).resolve()
    return any(real == Path(host) or Path(host) in real.parents for host, _ in _readonly_views())


def _system_links() -> list[str]:
    """/bin, /lib, ... as on the host: symlinks into /usr on merged-/usr systems."""
    args: list[str] = []
    for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(name):
            args += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    return args


def _gpu_devices() -> list[str]:
    """NVIDIA device nodes, so that CUDA works inside; nothing on a machine without them."""
    args: list[str] = []
    for node in sorted(glob.glob("/dev/nvidia*")) + sorted(glob.glob("/dev/dri")):
        args += ["--dev-bind", node, node]
    return args


def command(argv: list[str], worker_files: list[Path]) -> list[str]:
    """`argv` (a worker command whose script lives in WORKER_DIR) wrapped in bwrap."""
    if unsafe():
        return argv
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise SandboxUnavailable(f"bwrap is not installed. {HOW_TO_FIX}")
    wrapped = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
               "--unshare-cgroup-try", "--die-with-parent", "--new-session",
               "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", str(SCRATCH_BYTES), "--tmpfs", "/tmp",
               "--perms", "1777", "--dir", "/tmp/home",
               "--chdir", "/tmp", "--setenv", "HOME", "/tmp/home"]
    made: set[str] = set()
    for host, inside in _readonly_views():
        for parent in reversed(Path(inside).parents[:-1]):  # bwrap would make them 0700
            if str(parent) not in made:
                made.add(str(parent))
                wrapped += ["--perms", "0755", "--dir", str(parent)]
        wrapped += ["--ro-bind", host, inside]
    wrapped += _system_links() + _gpu_devices()
    inside = {str(file): f"{WORKER_DIR}/{file.name}" for file in worker_files}
    if inside:
        wrapped += ["--perms", "0755", "--dir", WORKER_DIR]
    for host, path in inside.items():
        wrapped += ["--ro-bind", host, path]
    argv = [inside.get(arg, arg) for arg in argv]
    if os.geteuid() == 0:
        # Root: no user namespace (a uid mapped from root is still root outside); drop to
        # a real unprivileged uid inside, with no capabilities left to regain.
        drop = ["setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups",
                "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
        return [*wrapped, "--", *drop, *argv]
    return [*wrapped, "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--cap-drop", "ALL", "--", *argv]


@functools.cache
def check() -> None:
    """Start one trivial sandbox, once per process; raise SandboxUnavailable if it fails."""
    if unsafe():
        print(f"WARNING: {UNSAFE_ENV} is set: student code runs WITHOUT a sandbox, with all "
              f"the rights of this user. Never grade other people's work like this.",
              file=sys.stderr)
        return
    probe = command([sys.executable, "-I", "-c", "import os; print(os.getuid())"], [])
    try:
        run = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxUnavailable(f"bwrap could not start ({exc}). {HOW_TO_FIX}") from None
    if run.returncode != 0 or run.stdout.strip() != str(SANDBOX_UID):
        detail = (run.stderr.strip() or run.stdout.strip())[-500:]
        raise SandboxUnavailable(f"bwrap failed here: {detail}. {HOW_TO_FIX}")
