"""The worker sandbox: student code runs in its own process inside bubblewrap, and every
way it can go wrong (exceptions, hangs, exits, memory, output floods) is contained and
named; what it can see of the machine is exactly what it needs."""

import time
from pathlib import Path

import pytest
import torch

import grader.student as student_module
from grader.student import Student, StudentError, Worker, WorkerCrashed, WorkerTimeout


def load(code: str, *, time_limit_s: float = 5.0, memory_mb: int = 3072, output_bytes: int = 1 << 16):
    worker = Worker(memory_mb=memory_mb, output_bytes=output_bytes)
    worker.wait_ready()
    return worker, Student(worker, [{"name": "'cell'", "source": code}], "test.ipynb", time_limit_s)


@pytest.fixture
def stopper():
    workers = []
    yield workers.append
    for w in workers:
        w.stop()


def test_calls_return_data_and_student_prints_stay_off_the_wire(stopper):
    worker, student = load("import torch\ndef f(x, scale=2):\n    print('noise ' * 50)\n    return x * scale\n")
    stopper(worker)
    assert student.f(3) == 6
    assert torch.equal(student.f(torch.ones(2), scale=3), torch.full((2,), 3.0))
    assert "noise" in student.output()


def test_objects_stay_in_the_worker_and_are_used_through_handles(stopper):
    worker, student = load(
        "class Counter:\n    def __init__(self, start):\n        self.count = start\n"
        "    def add(self, n):\n        self.count += n\n        return self\n")
    stopper(worker)
    counter = student.Counter(10)
    counter.add(5).add(1)
    assert counter.count.value() == 16


def test_student_exceptions_keep_their_builtin_type_and_traceback(stopper):
    worker, student = load("def f(x):\n    raise ValueError(f'bad x={x}')\n")
    stopper(worker)
    with pytest.raises(ValueError, match="bad x=4") as error:
        student.f(4)
    assert isinstance(error.value, StudentError)
    assert "cell 'cell'" in error.value.remote_traceback and "worker.py" not in error.value.remote_traceback


def test_a_missing_name_says_what_is_missing(stopper):
    worker, student = load("x = 1\n")
    stopper(worker)
    with pytest.raises(NameError, match="does not define `cost`"):
        student.cost(1)


def test_hang_is_a_timeout_within_the_limit(stopper):
    worker, student = load("def f():\n    while True:\n        pass\n", time_limit_s=1.0)
    stopper(worker)
    start = time.monotonic()
    with pytest.raises(WorkerTimeout):
        student.f()
    assert time.monotonic() - start < 5.0
    assert worker.process.poll() is not None, "the hung worker must be killed"


@pytest.mark.parametrize("code, why", [
    ("import os\nos._exit(7)\n", "exited with status 7"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "SIGKILL"),
])
def test_exit_at_load_is_a_crash_with_the_reason(code, why):
    with pytest.raises(WorkerCrashed, match=why):
        load(code)


def test_sys_exit_at_load_costs_only_its_cell(stopper):
    worker, student = load("import sys\ndef f():\n    return 1\nsys.exit(3)\ndef g():\n    return 2\n")
    stopper(worker)
    assert student.f() == 1, "what the cell defined before it exited is there"
    assert student.load_errors == [("'cell'", "SystemExit: 3 (line 4)")]
    with pytest.raises(StudentError, match="`g` comes from cell 'cell', which failed to load: SystemExit"):
        student.g()


def test_each_cell_loads_on_its_own(stopper):
    cells = [{"name": "'one'", "source": "def broken(:\n    pass\n"},
             {"name": "'two'", "source": "def works():\n    return 'ok'\n"},
             {"name": "'three'", "source": "import math\ndef uses_broken():\n    return broken()\n"}]
    worker = Worker(memory_mb=3072, output_bytes=1 << 16)
    stopper(worker)
    student = Student(worker, cells, "test.ipynb", 5.0)
    assert student.works() == "ok"
    with pytest.raises(StudentError, match="`broken` comes from cell 'one', which failed to load: SyntaxError") as error:
        student.broken()
    assert error.value.remote_traceback == "" or "worker.py" not in error.value.remote_traceback
    with pytest.raises(NameError, match="comes from cell 'one'"):
        student.uses_broken()


def test_cell_sources_are_registered_for_inspect(stopper):
    """@triton.jit and inspect.getsource need a function's source: cells are in linecache."""
    worker, student = load("import inspect\ndef f(x):\n    return x + 1\ndef source():\n    return inspect.getsource(f)\n")
    stopper(worker)
    assert student.source() == "def f(x):\n    return x + 1\n"


def test_memory_blow_up_is_contained(stopper):
    worker, student = load("def grab():\n    return bytearray(8 * 1024**3)\n", memory_mb=2048)
    stopper(worker)
    with pytest.raises((MemoryError, WorkerCrashed)):
        student.grab()


def test_output_flood_ends_the_worker_with_a_clear_reason(stopper):
    worker, student = load("def shout():\n    while True:\n        print('x' * 1000)\n", output_bytes=100_000)
    stopper(worker)
    with pytest.raises(WorkerCrashed, match="output limit"):
        student.shout()


PROBE = """
import os, socket
def probe(paths):
    seen = {p: os.path.exists(p) for p in paths}
    try:
        socket.create_connection(("127.0.0.1", 22), timeout=1)
        network = True
    except OSError:
        network = False
    try:
        open(paths[0] + "/planted.py", "w")
        wrote = True
    except OSError:
        wrote = False
    return {"uid": os.getuid(), "pid": os.getpid(), "cwd": os.getcwd(), "network": network,
            "seen": seen, "wrote": wrote, "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit())}
"""


def test_student_code_sees_only_what_it_needs(stopper):
    from course_config import ROOT

    worker, student = load(PROBE)
    stopper(worker)
    needed = [ROOT / "llmopt", ROOT / "models", ROOT / "course_config.py", ROOT / ".venv"]
    hidden = [ROOT / "source", ROOT / "solutions", ROOT / "grader", ROOT / "gradebook.db", ROOT / ".git",
              ROOT / "release", worker.scratch, Path("/work/shared"), Path("/var")]
    got = student.probe([str(p) for p in needed + hidden])
    assert got["uid"] == 65534, "an unprivileged uid"
    assert got["pid"] <= 3 and len(got["processes"]) <= 3, f"its own pid namespace: {got['processes']}"
    assert got["cwd"] == "/tmp" and not got["network"] and not got["wrote"]
    assert all(got["seen"][str(p)] for p in needed), got["seen"]
    assert not any(got["seen"][str(p)] for p in hidden), got["seen"]


def test_a_forged_oversized_frame_is_refused_without_reading_it(stopper):
    worker, student = load("import os, struct\ndef forge():\n"
                           "    os.write(int(__import__('sys').argv[2]), struct.pack('>Q', 50 << 20) + b'{' * (1 << 20))\n"
                           "    import time; time.sleep(10)\n")
    stopper(worker)
    with pytest.raises(WorkerCrashed, match="malformed reply"):
        student.forge()


def test_grading_refuses_without_a_sandbox(monkeypatch):
    from grader.sandbox import bubblewrap

    monkeypatch.setattr(bubblewrap.shutil, "which", lambda name: None)
    with pytest.raises(bubblewrap.SandboxUnavailable, match="apt-get install bubblewrap"):
        bubblewrap.command(["python"], [])


def test_a_triton_kernel_in_a_cell_runs_in_the_worker(stopper, monkeypatch):
    """@triton.jit reads its function's source: on the CPU, in Triton's interpreter."""
    from tools.gpu_check import TRITON_CELL

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    worker, student = load(TRITON_CELL, time_limit_s=120.0)
    stopper(worker)
    x = torch.randn(3000)
    assert torch.equal(student.double(x), 2 * x)


# Workers forked by one submission's zygote (grader/student.py, `Zygote`) share its
# sandbox: what one of them does to the others, or to the zygote, stays in that sandbox.

ZYGOTE_PROBE = '''
import ctypes, os, signal, subprocess, sys
def processes():
    return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
def read_zygote():
    """Everything a worker might try on the zygote (its parent), and what came of it."""
    zygote = os.getppid()
    found = {}
    for name in ("mem", "environ", "maps"):
        try:
            with open(f"/proc/{zygote}/{name}", "rb") as f:
                found[name] = len(f.read(64))
        except OSError as exc:
            found[name] = exc.errno
    libc = ctypes.CDLL(None, use_errno=True)
    found["ptrace"] = libc.ptrace(16, zygote, 0, 0)  # PTRACE_ATTACH
    return found
def leave_a_daemon(token):
    if os.fork() == 0:
        os.setsid()
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", token])
    return True
def stop_the_zygote():
    os.kill(os.getppid(), signal.SIGSTOP)
    return True
def kill_everything():
    for pid in processes():
        if pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return "survived"
'''


def _pool():
    from grader.student import WorkerPool

    return WorkerPool(memory_mb=3072, output_bytes=1 << 16)


def test_a_worker_can_neither_read_nor_trace_its_zygote():
    pool = _pool()
    try:
        found = pool.student("a", False, [{"name": "'cell'", "source": ZYGOTE_PROBE}], "test.ipynb", 10.0).read_zygote()
        assert found["ptrace"] == -1, "a worker attached to its zygote"
        assert all(isinstance(v, int) and v > 0 and v != 64 for k, v in found.items() if k != "ptrace"), found
    finally:
        pool.close()


def test_a_worker_that_kills_its_sandbox_harms_only_itself_and_leaves_nothing():
    pool = _pool()
    cells = [{"name": "'cell'", "source": ZYGOTE_PROBE}]
    token = f"grader-zygote-daemon-{time.monotonic_ns()}"
    try:
        assert pool.student("a", False, cells, "test.ipynb", 10.0).leave_a_daemon(token) is True
        try:  # it kills the zygote, and with it the sandbox: itself too, a moment later
            pool.student("b", False, cells, "test.ipynb", 10.0).kill_everything()
        except WorkerCrashed:
            pool.load_failure = None  # as for the next test of a run
        assert pool.student("c", False, cells, "test.ipynb", 10.0).processes(), "no worker after the kill"
        assert pool.student("d", True, cells, "test.ipynb", 10.0).leave_a_daemon(token) is True
    finally:
        pool.close()
    time.sleep(0.5)
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit()
            and token.encode() in (p / "cmdline").read_bytes()] if Path("/proc").is_dir() else []
    assert not left, "a worker's daemon outlived the grading run"


def test_a_stopped_zygote_is_replaced(monkeypatch):
    """A worker may stop its zygote (same uid): the next fork times out, and the pool
    starts a new sandbox instead of waiting for it."""
    monkeypatch.setattr(student_module, "ZYGOTE_TIMEOUT_S", 2.0)  # 10 s in grading: the same waits, shorter
    pool = _pool()
    cells = [{"name": "'cell'", "source": ZYGOTE_PROBE}]
    try:
        assert pool.student("a", False, cells, "test.ipynb", 10.0).stop_the_zygote() is True
        started = time.monotonic()
        assert pool.student("b", False, cells, "test.ipynb", 10.0).processes()
        assert time.monotonic() - started < 60
    finally:
        pool.close()
