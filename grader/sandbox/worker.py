"""A grading worker: the only process in which student code runs.

The judge starts one per suite file (see grader/student.py) with resource limits already
set, then speaks the protocol of wire.py over two inherited file descriptors; every test
loads the student's code afresh into a new module. The student's
own stdout and stderr go to a capped file, never onto the wire.

Requests (JSON):
  {"op": "load", "cells": [{"name", "source"}], "filename": str}   exec the student's code
  {"op": "call", "target": ref, "args": [...], "kwargs": {...}, "repeat": n}
  {"op": "get", "target": ref}                         read an attribute or global
  {"op": "library", "name": "module:attr"}             a trusted course-library object
where ref = {"global": name} | {"handle": n}, plus "path": [attribute names].
Replies: {"value": ...} or {"error": {"type", "module", "message", "traceback"}}.
"""

import errno
import os
import sys
import traceback
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire  # noqa: E402

del sys.path[0]

REQUESTS_FD, REPLIES_FD = int(sys.argv[1]), int(sys.argv[2])
OUTPUT_LIMIT_EXIT = 125  # the student's prints hit RLIMIT_FSIZE (Python ignores SIGXFSZ)


def _over_output_limit(exc: BaseException | None) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.EFBIG


def main() -> None:
    requests = os.fdopen(REQUESTS_FD, "rb", buffering=0)
    replies = os.fdopen(REPLIES_FD, "wb")

    # Warm up what nearly every chapter imports, before any student code runs.
    import numpy  # noqa: F401
    import torch

    torch.set_num_threads(int(os.environ.get("GRADER_WORKER_THREADS", "1")))

    # Student prints go to a file in the scratch directory (size-capped by RLIMIT_FSIZE).
    out = os.open("student_output.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)

    student = types.ModuleType("student")
    handles: list = []

    def handle_for(obj) -> int:
        handles.append(obj)
        return len(handles) - 1

    def resolve_handle(n: int, _type: str):
        return handles[n]

    def resolve(ref: dict):
        if "handle" in ref:
            obj = handles[ref["handle"]]
        else:
            name = ref["global"]
            if not hasattr(student, name):
                raise NameError(f"your notebook does not define `{name}` (check its spelling "
                                f"and that the cell defining it has no error)")
            obj = getattr(student, name)
        for attr in ref.get("path", []):
            obj = getattr(obj, attr)
        return obj

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
                for cell in request["cells"]:
                    where = f"{request.get('filename', 'notebook')}, cell {cell['name']}"
                    exec(compile(cell["source"], where, "exec"), student.__dict__)
                value = None
            elif op == "call":
                fn = resolve(request["target"])
                args = wire.decode(request.get("args", []), tensors, resolve_handle)
                kwargs = wire.decode(request.get("kwargs", {}), tensors, resolve_handle)
                for _ in range(int(request.get("repeat", 1))):
                    value = fn(*args, **kwargs)
                if request.get("sync") and torch.cuda.is_available():
                    torch.cuda.synchronize()
            elif op == "get":
                value = resolve(request["target"])
            elif op == "library":
                module_name, _, attr = request["name"].partition(":")
                if not module_name.startswith(("llmopt", "course_config", "torch", "math")):
                    raise PermissionError(f"{module_name} is not a course library module")
                value = __import__(module_name, fromlist=["_"])
                for part in filter(None, attr.split(".")):
                    value = getattr(value, part)
            else:
                raise ValueError(f"unknown op {op!r}")
            document, out_tensors = wire.encode(value, handle_for)
            reply = {"value": document}
        except BaseException as exc:  # report everything, SystemExit included
            if isinstance(exc, KeyboardInterrupt):
                raise
            if _over_output_limit(exc):
                os._exit(OUTPUT_LIMIT_EXIT)
            tb = exc.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
                tb = tb.tb_next  # show the student's frames, not the worker's
            reply = {"error": {
                "type": type(exc).__name__,
                "module": type(exc).__module__,
                "message": str(exc)[:4000],
                "traceback": "".join(traceback.format_exception(type(exc), exc, tb))[-8000:],
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
    main()
