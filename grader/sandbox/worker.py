"""A grading worker: the only process in which student code runs.

The judge starts it inside the bubblewrap sandbox (bubblewrap.py) with resource limits
already set, then speaks the protocol of wire.py over two inherited file descriptors.
The student's stdout and stderr are the inherited fds 1 and 2: a size-capped file that
the judge owns and the sandbox cannot see by name, never the wire.

Workers are forked from a zygote (`worker.py --zygote FD`): one process per sandbox that
imports what the chapter needs (torch: seconds of CPU) once, and then, for each worker
the judge asks for, receives the worker's three descriptors over its control socket and
forks. The zygote runs no student code and is not dumpable, so a worker can neither
read nor trace it; the workers it forks share its sandbox, which is one submission's
(see grader/student.py, `Zygote`).

Requests (JSON):
  {"op": "load", "cells": [{"name", "source"}], "filename": str}   exec the student's code
  {"op": "call", "target": ref, "args": [...], "kwargs": {...}}     one call
  {"op": "call", "target": ref, "each": [[args, kwargs], ...], "sync": bool}
                                                  one call per argument set, in order (the
                                                  judge times the whole request)
  {"op": "get", "target": ref}                    read an attribute or global
  {"op": "library", "name": "module:attr"}        a course-library object
  {"op": "keep", "value": ...}                    store data here, reply with its handle
where ref = {"global": name} | {"handle": n}, plus "path": [attribute names].
Replies: {"value": ...} or {"error": {"type", "module", "message", "traceback"}}.

Loading runs each cell on its own: a cell that fails is reported once, the next cells
still run, and a test that asks for a name the failed cell should have defined gets that
cell's error instead of a NameError.
"""

import ast
import errno
import importlib
import linecache
import os
import re
import sys
import traceback
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402

del sys.path[0]

REQUESTS_FD, REPLIES_FD = (None, None) if sys.argv[1] == "--zygote" else (int(sys.argv[1]), int(sys.argv[2]))
OUTPUT_LIMIT_EXIT = 125  # the student's prints hit RLIMIT_FSIZE (Python ignores SIGXFSZ)
DEFINITION = re.compile(r"^(?:async\s+)?(?:def|class)\s+(\w+)|^(\w+)\s*(?::[^=]*)?=(?!=)", re.M)


class CellLoadError(Exception):
    """A name the student's code needs comes from a cell that failed to load."""


def _over_output_limit(exc):
    return isinstance(exc, OSError) and exc.errno == errno.EFBIG


def defined_names(source):
    """Top-level names a cell defines; by pattern when it does not even parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {a or b for a, b in DEFINITION.findall(source)}
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def summary(exc, where):
    """One line for a cell that failed: the error and the line of the cell it came from."""
    line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == where:
            line = tb.tb_lineno
        tb = tb.tb_next
    at = f" (line {line})" if line else ""
    return f"{type(exc).__name__}: {str(exc)[:300]}{at}"


def load(module, cells, filename):
    """Exec each cell into `module`; return {name: (cell, error)} for names that failed."""
    missing = {}
    for cell in cells:
        where = f"{filename}, cell {cell['name']}"
        # Registered like IPython does, so inspect.getsource (and @triton.jit) find it.
        lines = cell["source"].splitlines(keepends=True)
        linecache.cache[where] = (len(cell["source"]), None, lines, where)
        try:
            exec(compile(cell["source"], where, "exec"), module.__dict__)
        except BaseException as exc:  # SystemExit included: one cell, not the notebook
            if isinstance(exc, KeyboardInterrupt):
                raise
            if _over_output_limit(exc):
                os._exit(OUTPUT_LIMIT_EXIT)
            error = summary(exc, where)
            for name in defined_names(cell["source"]):
                if name not in module.__dict__:
                    missing.setdefault(name, (cell["name"], error))
    return missing


def configure_torch() -> None:
    """Once torch is imported: the worker's thread count and, on a GPU, its share of the
    card (before any student code where the chapter warms torch up)."""
    torch = sys.modules.get("torch")
    if torch is None or getattr(configure_torch, "done", False):
        return
    configure_torch.done = True
    torch.set_num_threads(int(os.environ.get("GRADER_WORKER_THREADS", "1")))
    if torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(float(os.environ.get("GRADER_GPU_MEMORY_FRACTION", "1")))


class _Deferred(types.ModuleType):
    """Stands in for a module until its first attribute is read, then imports it and
    becomes a view of it. Every chapter's setup cell imports `matplotlib.pyplot` for its
    plots (0.8 s of CPU), and no graded function draws one: a worker pays for it only
    when the student's code really uses it."""

    def __init__(self, name, spec):
        super().__init__(name)
        self.__spec__ = spec  # the import system reads it without loading anything

    def __getattr__(self, attr):
        for name in DEFERRED:  # take the stand-ins out, import the real modules
            if isinstance(sys.modules.get(name), _Deferred):
                del sys.modules[name]
        real = importlib.import_module(self.__name__)
        self.__dict__.update(real.__dict__)
        return getattr(real, attr)


DEFERRED = ("matplotlib", "matplotlib.pyplot")


def defer_plotting():
    """`import matplotlib.pyplot as plt` binds stand-ins (see `_Deferred`); the parent
    holds its child as an attribute, as the import system expects of a package."""
    import importlib.machinery
    import importlib.util

    if DEFERRED[0] in sys.modules:
        return
    parent_spec = importlib.util.find_spec(DEFERRED[0])
    if parent_spec is None:
        return
    parent = _Deferred(DEFERRED[0], parent_spec)
    child_spec = importlib.machinery.PathFinder.find_spec(DEFERRED[1], parent_spec.submodule_search_locations)
    child = _Deferred(DEFERRED[1], child_spec)
    parent.__dict__["pyplot"] = child
    sys.modules[DEFERRED[0]], sys.modules[DEFERRED[1]] = parent, child


def warm_up():
    """Import what the chapter's code imports, before any student code runs; a chapter
    without torch does not pay for importing it."""
    for name in filter(None, os.environ.get("GRADER_WARM_IMPORTS", "numpy,torch").split(",")):
        importlib.import_module(name)
    defer_plotting()


def zygote(control_fd):
    """Fork a worker for each {"op": "fork"} that arrives with its three descriptors
    (requests, replies, output); report {"forked": pid} and, once reaped, {"exited": pid,
    "status": returncode}; {"op": "kill", "pid": n} kills a worker's process group. Ends
    when the judge closes the socket. CUDA is never touched here: it does not survive a
    fork, so each worker sets it up itself (configure_torch)."""
    import ctypes
    import json
    import random
    import select
    import signal
    import socket

    control = socket.socket(fileno=control_fd)
    warm_up()
    ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no ptrace, no /proc/pid/mem
    control.send(json.dumps({"ready": True}).encode())
    children = set()
    while True:
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            control.send(json.dumps({"exited": pid, "status": code}).encode())
        if not select.select([control], [], [], 0.05)[0]:
            continue
        message, fds, _, _ = socket.recv_fds(control, 4096, 3)
        if not message:  # the judge is gone: so are its workers (they die with this sandbox)
            os._exit(0)
        request = json.loads(message)
        if request["op"] == "fork" and len(fds) == 3:
            pid = os.fork()
            if pid == 0:
                global REQUESTS_FD, REPLIES_FD
                code = 1
                try:
                    control.close()
                    os.setsid()  # its own process group: a kill takes everything it started
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    os.dup2(fds[2], 1)
                    os.dup2(fds[2], 2)
                    os.close(fds[2])
                    REQUESTS_FD, REPLIES_FD = fds[0], fds[1]
                    sys.argv[1:] = [str(fds[0]), str(fds[1])]  # as a worker started alone
                    random.seed()  # as a fresh interpreter would be
                    main()
                    code = 0
                except BaseException:
                    traceback.print_exc()
                finally:
                    os._exit(code)
            children.add(pid)
            control.send(json.dumps({"forked": pid}).encode())
        elif request["op"] == "kill" and request.get("pid") in children:
            try:
                os.killpg(request["pid"], signal.SIGKILL)
            except OSError:
                pass
        for fd in fds:
            os.close(fd)


def main():
    requests = os.fdopen(REQUESTS_FD, "rb", buffering=0)
    replies = os.fdopen(REPLIES_FD, "wb")

    warm_up()
    configure_torch()
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)

    student = types.ModuleType("student")
    missing = {}
    handles = []

    def handle_for(obj):
        handles.append(obj)
        return len(handles) - 1

    def resolve_handle(n, _type):
        return handles[n]

    def resolve(ref):
        if "handle" in ref:
            obj = handles[ref["handle"]]
        else:
            name = ref["global"]
            if not hasattr(student, name):
                if name in missing:
                    cell, error = missing[name]
                    raise CellLoadError(f"`{name}` comes from cell {cell}, which failed to load: {error}")
                raise NameError(f"your notebook does not define `{name}` (check its spelling "
                                f"and that the cell defining it has no error)")
            obj = getattr(student, name)
        for attr in ref.get("path", []):
            obj = getattr(obj, attr)
        return obj

    def sync():
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()

    wire.send(replies, {"ready": True, "pid": os.getpid()})
    while True:
        try:
            request, tensors = wire.recv(requests)
        except EOFError:
            return
        try:
            op = request["op"]
            if op == "load":  # a fresh module each time: no state survives from the last test
                student = types.ModuleType("student")
                sys.modules["student"] = student
                handles.clear()
                missing = load(student, request["cells"], request.get("filename", "notebook"))
                configure_torch()  # the student's code imported torch where the chapter does not
                value = sorted(set(missing.values()))  # (cell, error) of each cell that failed
            elif op == "call":
                fn = resolve(request["target"])
                if "each" in request:
                    calls = wire.decode(request["each"], tensors, resolve_handle)
                    value = [fn(*args, **kwargs) for args, kwargs in calls]
                else:
                    args = wire.decode(request.get("args", []), tensors, resolve_handle)
                    kwargs = wire.decode(request.get("kwargs", {}), tensors, resolve_handle)
                    value = fn(*args, **kwargs)
                if request.get("sync"):
                    sync()
            elif op == "get":
                value = resolve(request["target"])
            elif op == "library":
                module_name, _, attr = request["name"].partition(":")
                if not module_name.startswith(("llmopt", "course_config", "torch", "math")):
                    raise PermissionError(f"{module_name} is not a course library module")
                value = __import__(module_name, fromlist=["_"])
                for part in filter(None, attr.split(".")):
                    value = getattr(value, part)
            elif op == "keep":  # e.g. a large input staged once, then passed by handle
                value = wire.decode(request["value"], tensors, resolve_handle)
                kept = {"__handle__": handle_for(value), "type": type(value).__name__}
            else:
                raise ValueError(f"unknown op {op!r}")
            document, out_tensors = (kept, {}) if op == "keep" else wire.encode(value, handle_for)
            reply = {"value": document}
        except BaseException as exc:  # report everything, SystemExit included
            if isinstance(exc, KeyboardInterrupt):
                raise
            if _over_output_limit(exc):
                os._exit(OUTPUT_LIMIT_EXIT)
            tb = exc.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
                tb = tb.tb_next  # show the student's frames, not the worker's
            message = str(exc)[:2000]
            if isinstance(exc, NameError) and getattr(exc, "name", None) in missing:
                cell, error = missing[exc.name]
                message += f" (`{exc.name}` comes from cell {cell}, which failed to load: {error})"
            reply = {"error": {
                "type": type(exc).__name__,
                "module": type(exc).__module__,
                "message": message,
                "traceback": "".join(traceback.format_exception(type(exc), exc, tb))[-4000:],
            }}
            out_tensors = {}
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            os._exit(OUTPUT_LIMIT_EXIT)
        try:
            wire.send(replies, reply, out_tensors)
        except TypeError as exc:  # the value held something the wire cannot carry
            wire.send(replies, {"error": {"type": "TypeError", "module": "builtins",
                                          "message": str(exc), "traceback": ""}})


if __name__ == "__main__":
    if sys.argv[1] == "--zygote":
        zygote(int(sys.argv[2]))
    else:
        main()
