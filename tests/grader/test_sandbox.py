"""The worker sandbox: student code runs in its own process, and every way it can go
wrong (exceptions, hangs, exits, memory, output floods) is contained and named."""

import time

import pytest
import torch

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


def test_sys_exit_at_load_is_reported_as_the_students_exception():
    with pytest.raises(StudentError, match="3") as error:
        load("import sys\nsys.exit(3)\n")
    assert error.value.remote_type == "SystemExit"


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


def test_student_code_runs_in_another_process_in_a_scratch_directory(stopper):
    import os

    worker, student = load("import os\ndef where():\n    return os.getpid(), os.getcwd()\n")
    stopper(worker)
    pid, cwd = student.where()
    assert pid != os.getpid() and pid == worker.process.pid
    assert cwd == str(worker.scratch)
