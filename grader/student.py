"""The judge's side of a grading worker: start it under limits, talk to it, stop it.

A suite never touches student code directly. It calls `student.some_function(...)`, and
this module ships the call to a worker process (grader/sandbox/worker.py), waits for the
answer within the test's wall-time budget, and turns what happened into a value, a
re-raised student exception, or one of three outcomes the grader reports by name:
timeout, crashed (the worker died: exit, signal, memory, output limit), or a load error.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import course_config
from grader.sandbox import bubblewrap, wire

WORKER_SCRIPT = Path(__file__).parent / "sandbox" / "worker.py"
WIRE_MODULE = Path(__file__).parent / "sandbox" / "wire.py"
MAX_PROCESSES = 2048  # threads count too; a fork bomb stops here
MAX_MESSAGE_LINE = 300  # characters of one line of a message shown to a student
MAX_MESSAGE = 2000  # characters of one test's message in all
OUTPUT_LIMIT_EXIT = 125  # the worker's exit status when the student's prints hit the limit
STARTUP_TIMEOUT_S = 120.0  # importing torch on a busy 2-core machine can take a while
ZYGOTE_TIMEOUT_S = 10.0  # a zygote answers a fork or reports an exit in milliseconds; one that does not is stopped
LOAD_TIMEOUT_S = 120.0  # running the student's cells (imports, model loading) before a test
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TRITON_INTERPRET", "COURSE_SMALL", "CUDA_VISIBLE_DEVICES",
              "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "PYTHONHASHSEED", "OPENBLAS_CORETYPE",
              "OPENBLAS_L2_SIZE")


class WorkerTimeout(Exception):
    """The student's code did not answer within the test's time limit."""


class WorkerCrashed(Exception):
    """The worker process died: the student's code exited, was killed or ran out of memory."""


class StudentError(Exception):
    """An exception raised by the student's code, re-raised in the judge.

    Built-in exception types keep their type (a student's ValueError is caught by
    `pytest.raises(ValueError)`); the remote traceback is kept for feedback."""

    remote_type = "Exception"
    remote_traceback = ""


_exception_classes: dict[tuple[str, str], type] = {}


def _exception_class(type_name: str, module: str) -> type:
    key = (module, type_name)
    if key not in _exception_classes:
        base: type = Exception
        if module == "builtins":
            candidate = getattr(__import__("builtins"), type_name, None)
            if isinstance(candidate, type) and issubclass(candidate, Exception):
                base = candidate
        elif module.split(".")[0] in ("llmopt", "course_config"):
            try:
                candidate = getattr(__import__(module, fromlist=["_"]), type_name)
                if isinstance(candidate, type) and issubclass(candidate, Exception):
                    base = candidate
            except Exception:
                pass
        bases = (StudentError,) if base is Exception else (StudentError, base)
        _exception_classes[key] = type(f"Student{type_name}", bases, {"remote_type": type_name})
    return _exception_classes[key]


def _limit_resources(memory_mb: int, output_bytes: int) -> None:
    """Runs in the child between fork and exec: caps that survive into the sandbox.

    Memory is capped with RLIMIT_DATA (heap and private writable mappings), not
    RLIMIT_AS: CUDA reserves far more address space than it ever touches, so an
    address-space cap stops it from initialising at all."""
    os.setsid()  # own process group, so a timeout kills every process the student started
    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    resource.setrlimit(resource.RLIMIT_FSIZE, (output_bytes, output_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (MAX_PROCESSES, MAX_PROCESSES))


class ZygoteGone(RuntimeError):
    """The zygote died or stopped answering (a worker of the same submission may have
    killed it): the pool starts another."""


class Zygote:
    """One sandbox per submission's grading run, with a process in it that has imported
    what the chapter needs and forks every worker that run asks for (worker.py,
    `zygote`): the seconds of `import torch` are paid once, not once per worker.

    Within the run the workers share the sandbox (its /tmp, its pid namespace), and hold
    one submission's code only; the zygote runs none of it and is not dumpable, so
    they cannot read or trace it. Another submission, a baseline and the reference get
    sandboxes of their own. Everything in the sandbox dies with the zygote."""

    def __init__(self, memory_mb: int, output_bytes: int, threads: int = 1,
                 imports: tuple[str, ...] = course_config.Chapter.worker_imports):
        bubblewrap.check()
        self.scratch = Path(tempfile.mkdtemp(prefix="grader-zygote-"))  # judge-private
        log = os.open(self.scratch / "zygote.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
        env.update(HOME="/tmp/home", MPLBACKEND="Agg", GRADER_WORKER_THREADS=str(threads),
                   GRADER_WARM_IMPORTS=",".join(imports),
                   GRADER_GPU_MEMORY_FRACTION=str(course_config.GRADING.worker_gpu_memory_fraction),
                   OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   PYTHONDONTWRITEBYTECODE="1", PYTHONHASHSEED="0")
        argv = [sys.executable, "-I", str(WORKER_SCRIPT), "--zygote", str(theirs.fileno())]
        try:
            self.process = subprocess.Popen(
                bubblewrap.command(argv, [WORKER_SCRIPT, WIRE_MODULE]), cwd=self.scratch, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(theirs.fileno(),),
                preexec_fn=lambda: _limit_resources(memory_mb, output_bytes),
            )
        finally:
            os.close(log)
            theirs.close()
        self._lock = threading.Lock()  # one fork at a time
        self._changed = threading.Condition()
        self._ready = self._closed = False
        self._forked: list[int] = []
        self._exited: dict[int, int] = {}
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        while True:
            try:
                message = json.loads(self._control.recv(4096) or b"null")
            except (OSError, ValueError):
                message = None
            with self._changed:
                if not isinstance(message, dict):  # gone (or not our zygote any more)
                    self._closed = True
                    self._changed.notify_all()
                    return
                if "ready" in message:
                    self._ready = True
                elif "forked" in message:
                    self._forked.append(int(message["forked"]))
                elif "exited" in message:
                    self._exited[int(message["exited"])] = int(message["status"])
                self._changed.notify_all()

    def alive(self) -> bool:
        return not self._closed and self.process.poll() is None

    def fork(self, fds: tuple[int, int, int]) -> "_Forked":
        """A new worker on these descriptors (requests, replies, output)."""
        with self._lock, self._changed:
            self._changed.wait_for(lambda: self._ready or self._closed, STARTUP_TIMEOUT_S)
            try:
                if not self._ready or self._closed:
                    raise OSError
                socket.send_fds(self._control, [b'{"op": "fork"}'], list(fds))
            except OSError:
                raise ZygoteGone(f"the grading zygote is gone: {self.log_tail()}") from None
            if not self._changed.wait_for(lambda: self._forked or self._closed, ZYGOTE_TIMEOUT_S) \
                    or not self._forked:
                raise ZygoteGone(f"the grading zygote did not fork: {self.log_tail()}")
            return _Forked(self, self._forked.pop(0))

    def returncode(self, pid: int) -> int | None:
        with self._changed:
            if pid in self._exited:
                return self._exited[pid]
            return -signal.SIGKILL if self._closed else None  # it died with the sandbox

    def wait(self, pid: int, timeout: float | None = None) -> int:
        with self._changed:
            self._changed.wait_for(lambda: pid in self._exited or self._closed, timeout)
        code = self.returncode(pid)
        if code is None:
            raise subprocess.TimeoutExpired(f"worker {pid}", timeout)
        return code

    def kill(self, pid: int) -> None:
        try:
            self._control.send(json.dumps({"op": "kill", "pid": pid}).encode())
        except OSError:
            pass

    def log_tail(self) -> str:
        try:
            return (self.scratch / "zygote.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()
        self._control.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


class _Forked:
    """A worker forked by a zygote, as the Worker sees a process: poll, wait, kill."""

    def __init__(self, zygote: Zygote, pid: int):
        self.zygote, self.pid = zygote, pid

    def poll(self) -> int | None:
        return self.zygote.returncode(self.pid)

    def wait(self, timeout: float | None = None) -> int:
        return self.zygote.wait(self.pid, timeout)

    def kill(self) -> None:
        self.zygote.kill(self.pid)


class Worker:
    """One sandboxed worker process, serving the tests of one suite file until it fails.
    Forked by `zygote`, or by a zygote of its own when none is given (a baseline, the
    reference: code that must not share a sandbox with a student's)."""

    def __init__(self, memory_mb: int, output_bytes: int, threads: int = 1,
                 imports: tuple[str, ...] = course_config.Chapter.worker_imports, zygote: Zygote | None = None):
        self._own_zygote = zygote is None
        self.zygote = zygote or Zygote(memory_mb, output_bytes, threads, imports)
        # Judge-private: the student's output file lives here, opened by the judge and
        # inherited as the worker's stdout/stderr; the sandbox cannot see this folder.
        self.scratch = Path(tempfile.mkdtemp(prefix="grader-worker-"))
        self.output_bytes = output_bytes
        self._output_path = self.scratch / "student_output.txt"
        output = os.open(self._output_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        req_read, self._req_write = os.pipe()
        self._rep_read, rep_write = os.pipe()
        try:
            self.process = self.zygote.fork((req_read, rep_write, output))
        except ZygoteGone:
            for fd in (self._req_write, self._rep_read):
                os.close(fd)
            shutil.rmtree(self.scratch, ignore_errors=True)
            if self._own_zygote:
                self.zygote.stop()
            raise
        finally:
            os.close(output)
            os.close(req_read)
            os.close(rep_write)
        self._requests = os.fdopen(self._req_write, "wb")
        self._replies = os.fdopen(self._rep_read, "rb")
        self.deadline = time.monotonic() + STARTUP_TIMEOUT_S
        self._ready = None  # the worker's hello, read lazily

    # -- lifecycle ---------------------------------------------------------------------

    def wait_ready(self) -> None:
        if self._ready is None:
            deadline, self.deadline = self.deadline, time.monotonic() + STARTUP_TIMEOUT_S
            try:
                self._ready, _ = self._receive(deadline, during="starting")
            except (WorkerCrashed, WorkerTimeout) as exc:
                raise RuntimeError(f"the grading worker failed to start: {exc}") from None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=ZYGOTE_TIMEOUT_S)
        except subprocess.TimeoutExpired:  # the zygote does not answer: end its sandbox
            self.zygote.stop()
        if self._own_zygote:
            self.zygote.stop()
        for stream in (self._requests, self._replies):
            try:
                stream.close()
            except OSError:
                pass
        shutil.rmtree(self.scratch, ignore_errors=True)

    def student_output(self, limit: int = 2000) -> str:
        try:
            with open(self._output_path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - limit))
                return f.read(limit).decode(errors="replace")
        except OSError:
            return ""

    # -- requests ----------------------------------------------------------------------

    def request(self, document: dict, tensors: dict | None = None, *, during: str) -> Any:
        """Send one request and return the decoded value, within the test's deadline."""
        self.wait_ready()
        try:
            wire.send(self._requests, document, tensors)
        except (BrokenPipeError, OSError):
            raise self._crashed(during) from None
        reply, reply_tensors = self._receive(self.deadline, during=during)
        try:
            if "error" in reply:
                err = reply["error"]
                cls = _exception_class(str(err.get("type", "Exception")), str(err.get("module", "")))
                exc = cls(cap(str(err.get("message", ""))))
                exc.remote_traceback = str(err.get("traceback", ""))[-4000:]
            else:
                return wire.decode(reply["value"], reply_tensors,
                                   lambda n, t: RemoteRef(self, {"handle": int(n)}, str(t)))
        except Exception:  # a reply that is JSON but not a message: the worker is not ours
            self.stop()
            raise WorkerCrashed(f"the worker sent a malformed reply while {during}") from None
        raise exc

    def _receive(self, deadline: float, *, during: str) -> tuple[dict, dict]:
        box: dict = {}

        def read() -> None:
            try:
                box["message"] = wire.recv(self._replies, wire.JUDGE_MAX_DOCUMENT, wire.JUDGE_MAX_TENSORS)
            except BaseException as exc:  # EOF, malformed frame
                box["error"] = exc

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        if reader.is_alive():
            self.stop()  # closes the pipe, which ends the reader
            reader.join()
            raise WorkerTimeout(f"no answer within the time limit while {during}")
        if "error" in box:
            if isinstance(box["error"], wire.WireError):
                self.stop()
                raise WorkerCrashed(f"the worker sent a malformed reply while {during}")
            raise self._crashed(during)
        return box["message"]

    def _crashed(self, during: str) -> WorkerCrashed:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        output = self.student_output()
        self.stop()
        if code is None:
            why = "closed its connection"
        elif code == OUTPUT_LIMIT_EXIT or (code < 0 and -code == signal.SIGXFSZ):
            why = f"printed more than {self.output_bytes} bytes (the output limit)"
        elif code < 0:
            why = f"was killed by signal {signal.Signals(-code).name}"
            if -code in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS):
                why += " (often: out of memory under the grader's memory limit)"
        else:
            why = f"exited with status {code} (sys.exit or os._exit in your code?)"
        tail = f"\n--- last output of your code ---\n{output}" if output.strip() else ""
        return WorkerCrashed(f"your code's process {why} while {during}{tail}")


class RemoteRef:
    """A name in the student's code (or an object living in the worker), used like the
    object itself: `ref(...)` calls it, `ref.attr` names an attribute, `ref.value()`
    fetches it as data."""

    __slots__ = ("_worker", "_target", "_type")

    def __init__(self, worker: Worker, target: dict, type_name: str = "object"):
        self._worker, self._target, self._type = worker, target, type_name

    def __getattr__(self, name: str) -> "RemoteRef":
        if name.startswith("__"):
            raise AttributeError(name)
        path = [*self._target.get("path", []), name]
        return RemoteRef(self._worker, {**self._target, "path": path})

    def _describe(self) -> str:
        base = self._target.get("global") or self._type
        return ".".join([base, *self._target.get("path", [])])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        encoded, tensors = wire.encode([list(args), kwargs], _handle_of(self._worker))
        return self._worker.request(
            {"op": "call", "target": self._target, "args": encoded[0], "kwargs": encoded[1]},
            tensors, during=f"running {self._describe()}(...)")

    def timed(self, calls: list[tuple[tuple, dict]]) -> tuple[float, list]:
        """Each (args, kwargs) called once, in order, in one request that the judge times
        from sending the arguments to receiving every output (device synchronised before
        the reply): (seconds, outputs). Every output comes back inside the timed window,
        so work skipped or deferred until an output is looked at cannot hide from the clock."""
        encoded, tensors = wire.encode([[list(a), k] for a, k in calls], _handle_of(self._worker))
        start = time.perf_counter()
        outputs = self._worker.request(
            {"op": "call", "target": self._target, "each": encoded, "sync": True},
            tensors, during=f"timing {self._describe()}(...)")
        return time.perf_counter() - start, outputs

    def value(self) -> Any:
        return self._worker.request({"op": "get", "target": self._target},
                                    during=f"reading {self._describe()}")

    def __repr__(self) -> str:
        return f"<student {self._describe()}>"


def _handle_of(worker: Worker):
    def handle_for(obj: Any) -> int:
        if isinstance(obj, RemoteRef) and obj._worker is worker:
            if "global" in obj._target or obj._target.get("path"):
                obj = obj.value()
                if not isinstance(obj, RemoteRef):
                    raise TypeError("a plain value cannot be passed as a handle")
            return obj._target["handle"]
        raise TypeError(f"cannot send a {type(obj).__name__} to the student's code")

    return handle_for


class Student:
    """The `student` fixture: the student's notebook, loaded in a fresh worker.

    `load_errors` lists (cell, error) for each cell that failed to load; the other cells
    are loaded, and a test that needs a name from a failed cell fails with that error."""

    def __init__(self, worker: Worker, cells: list[dict], filename: str, time_limit_s: float):
        """Load the cells (within LOAD_TIMEOUT_S), then start the test's own clock."""
        self._worker = worker
        worker.deadline = time.monotonic() + LOAD_TIMEOUT_S
        errors = worker.request({"op": "load", "cells": cells, "filename": filename},
                                during="loading your notebook's code")
        self.load_errors = [(str(c), cap(str(e))) for c, e in errors] if isinstance(errors, list) else []
        worker.deadline = time.monotonic() + time_limit_s

    def __getattr__(self, name: str) -> RemoteRef:
        if name.startswith("_"):
            raise AttributeError(name)
        return RemoteRef(self._worker, {"global": name})

    def library(self, name: str) -> RemoteRef:
        """A course-library object inside the worker, e.g. "llmopt.engine:generate"."""
        return self._worker.request({"op": "library", "name": name}, during=f"importing {name}")

    def keep(self, value: Any) -> RemoteRef:
        """Send data once and keep it in the worker: pass the returned handle to calls."""
        encoded, tensors = wire.encode(value)
        return self._worker.request({"op": "keep", "value": encoded}, tensors, during="receiving data")

    def output(self) -> str:
        """What the student's code has printed so far (the tail)."""
        return self._worker.student_output()


class Baseline(Student):
    """A worker in which no student code ever runs: baselines and calibration are computed
    here, so a submission cannot patch what it is compared with. Same sandbox, limits and
    thread count as the student's worker."""

    def __init__(self, worker: Worker, time_limit_s: float):
        self._worker = worker
        self.load_errors = []
        worker.wait_ready()
        worker.deadline = time.monotonic() + time_limit_s

    def __getattr__(self, name: str) -> RemoteRef:
        raise AttributeError(f"the baseline worker holds no student code ({name})")


def cap(message: str) -> str:
    """A student-facing message within MAX_MESSAGE_LINE per line and MAX_MESSAGE in all."""
    lines = [ln if len(ln) <= MAX_MESSAGE_LINE else ln[:MAX_MESSAGE_LINE] + " [...]"
             for ln in message.splitlines()]
    text = "\n".join(lines)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "\n[... message cut]"


def until_decided(measure, rounds: int, passes) -> list[float]:
    """`measure(round_index)` for rounds 0, 1, ... up to `rounds`, stopping as soon as a
    majority of `rounds` lies on one side of the threshold (`passes(value)` true for more
    than half of them, or false for more than half). A median of `rounds` values passes
    exactly when a majority of them does, and the median of the values measured by then
    lies on that same side: the verdict is the one all rounds would give, and a clear
    case (either way) costs a majority of the rounds instead of all of them."""
    values, majority = [], rounds // 2 + 1
    for round_index in range(rounds):
        values.append(measure(round_index))
        good = sum(1 for v in values if passes(v))
        if good >= majority or len(values) - good >= majority:
            break
    return values


def interleaved(candidate: RemoteRef, baseline: RemoteRef, make_calls, rounds: int, check=None,
                passes=None) -> list[float]:
    """candidate time / baseline time, once per round, both timed by the judge.

    `make_calls(round)` returns fresh (candidate_calls, baseline_calls), lists of
    (args, kwargs): no repetition ever sees inputs it saw before, so remembering answers
    gains nothing. The two sides alternate which goes first. `check(round,
    candidate_outputs, baseline_outputs)` verifies the outputs of every round. With
    `passes` (the test's threshold on a ratio), rounds stop once a majority agrees
    (`until_decided`)."""

    def one_round(round_index: int) -> float:
        candidate_calls, baseline_calls = make_calls(round_index)
        if round_index % 2:
            candidate_s, candidate_out = candidate.timed(candidate_calls)
            baseline_s, baseline_out = baseline.timed(baseline_calls)
        else:
            baseline_s, baseline_out = baseline.timed(baseline_calls)
            candidate_s, candidate_out = candidate.timed(candidate_calls)
        if check is not None:
            check(round_index, candidate_out, baseline_out)
        return candidate_s / baseline_s

    if passes is not None:
        return until_decided(one_round, rounds, passes)
    return [one_round(round_index) for round_index in range(rounds)]


class WorkerPool:
    """Hands each test a worker: the one of its suite file while that worker is healthy,
    else a fresh one (after a timeout or crash, for a new file, or when a test asks with
    `fresh=True`), forked in a moment by the submission's zygote. One more worker, in a
    sandbox of its own and never loading student code, serves the baselines."""

    def __init__(self, memory_mb: int, output_bytes: int, threads: int = 1,
                 imports: tuple[str, ...] = course_config.Chapter.worker_imports):
        self._args = (memory_mb, output_bytes, threads, imports)
        self._zygote: Zygote | None = None
        self._current: tuple[str, Worker] | None = None
        self._baseline: Worker | None = None
        self.load_failure: BaseException | None = None

    def _fork(self) -> Worker:
        """A new worker; a zygote that the submission's code killed or stopped is
        replaced, once."""
        for attempt in range(2):
            if self._zygote is not None and not self._zygote.alive():
                self._zygote.stop()
                self._zygote = None
            if self._zygote is None:
                self._zygote = Zygote(*self._args)
            try:
                return Worker(*self._args, zygote=self._zygote)
            except ZygoteGone:
                self._zygote.stop()
                self._zygote = None
                if attempt:
                    raise

    def worker_for(self, group: str, fresh: bool = False) -> Worker:
        if self._current is not None:
            current_group, worker = self._current
            if current_group == group and not fresh and worker.process.poll() is None:
                return worker
            worker.stop()
            self._current = None
        worker = self._fork()
        worker.wait_ready()
        self._current = (group, worker)
        return worker

    def student(self, group: str, fresh: bool, cells: list[dict], filename: str, limit: float) -> Student:
        if self.load_failure is not None:
            raise self.load_failure
        try:
            return Student(self.worker_for(group, fresh), cells, filename, limit)
        except (WorkerTimeout, WorkerCrashed) as exc:
            self.load_failure = type(exc)(str(exc))
            raise

    def baseline(self, limit: float) -> Baseline:
        if self._baseline is None or self._baseline.process.poll() is not None:
            if self._baseline is not None:
                self._baseline.stop()
            self._baseline = Worker(*self._args)
        return Baseline(self._baseline, limit)

    def close(self) -> None:
        for worker in (self._current[1] if self._current else None, self._baseline):
            if worker is not None:
                worker.stop()
        if self._zygote is not None:
            self._zygote.stop()
        self._zygote = self._current = self._baseline = None


@contextlib.contextmanager
def reference_worker(chapter: str, *grade_ids: str):
    """The instructors' code of these cells of `chapter` (e.g. "setup" and a solution) in a
    sandboxed worker of its own that never runs student code: the other side of a timing
    comparison, so that both pay the same per-call costs and neither can touch the other."""
    from grader.notebook import source_notebook, student_cells

    ch = course_config.chapter(chapter)
    names = {repr(grade_id) for grade_id in grade_ids}
    cells = [c for c in student_cells(source_notebook(ch.slug, ch.notebooks[0])[0]) if c["name"] in names]
    worker = Worker(ch.worker_memory_mb, course_config.GRADING.worker_output_bytes,
                    course_config.GRADING.worker_threads, ch.worker_imports)
    try:
        yield Student(worker, cells, "reference.ipynb", 300.0)
    finally:
        worker.stop()
