"""The wire between the judge and a worker: framed JSON plus one safetensors blob.

Values cross the process boundary as data, never pickle, so nothing a submission sends
can execute in the judge. A message is two length-prefixed frames: a JSON document and a
safetensors blob holding every tensor or array the document refers to. Objects that are
not data (a student's class instance, a function) stay in the worker and travel as a
handle number.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any, BinaryIO

_LEN = struct.Struct(">Q")
# Frame caps. The judge reads what student code wrote, so its caps are small: a JSON
# document of a few MiB parses into many times its size in Python objects.
MAX_DOCUMENT = 1 << 31
MAX_TENSORS = 1 << 31
JUDGE_MAX_DOCUMENT = 4 << 20
JUDGE_MAX_TENSORS = 256 << 20


class WireError(RuntimeError):
    """The other side sent something that is not a well-formed message."""


def encode(value: Any, handle_for=None) -> tuple[Any, dict]:
    """Turn `value` into JSON-able data plus a dict of tensors (name -> tensor).

    `handle_for(obj) -> int` is called for objects that are not data; without it such
    objects raise TypeError.
    """
    tensors: dict = {}
    names: dict[int, str] = {}
    storages: set[int] = set()
    keep_alive: list = []

    def enc(v: Any) -> Any:
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {"__float__": repr(v)}
        if isinstance(v, (list, tuple)):
            items = [enc(x) for x in v]
            return items if isinstance(v, list) else {"__tuple__": items}
        if isinstance(v, dict):
            if all(isinstance(k, str) for k in v):
                if any(k.startswith("__") and k.endswith("__") for k in v):
                    return {"__dict__": [[k, enc(x)] for k, x in v.items()]}
                return {k: enc(x) for k, x in v.items()}
            return {"__dict__": [[enc(k), enc(x)] for k, x in v.items()]}
        kind = type(v).__module__.split(".")[0]
        if kind == "numpy":
            import numpy as np

            if isinstance(v, np.generic):
                return enc(v.item())
            if isinstance(v, np.ndarray):
                import torch

                name = f"t{len(tensors)}"
                tensors[name] = torch.from_numpy(np.array(v, order="C", copy=True))
                return {"__ndarray__": name}
        if kind == "torch":
            import torch

            if isinstance(v, torch.Tensor):
                if id(v) not in names:  # one entry per tensor object; views of one storage copied
                    name = f"t{len(tensors)}"
                    tensor, view = _span(v.detach().to("cpu"))
                    pointer = tensor.untyped_storage().data_ptr()
                    tensors[name] = tensor.clone() if pointer in storages else tensor
                    storages.add(pointer)
                    keep_alive.append(v)  # ids stay unique while encoding
                    names[id(v)] = {"__tensor__": name, **({"view": view} if view else {})}
                if v.device.type != "cpu":  # arrives on the same device (where there is one)
                    return {**names[id(v)], "device": str(v.device)}
                return names[id(v)]
            if isinstance(v, torch.dtype):
                return {"__dtype__": str(v).removeprefix("torch.")}
        if handle_for is not None:
            return {"__handle__": handle_for(v), "type": type(v).__name__}
        raise TypeError(f"cannot send a {type(v).__name__} across the wire")

    return enc(value), tensors


def decode(data: Any, tensors: dict, resolve_handle=None) -> Any:
    """Inverse of `encode`. `resolve_handle(n)` maps a handle number to an object."""

    def dec(v: Any) -> Any:
        if isinstance(v, list):
            return [dec(x) for x in v]
        if not isinstance(v, dict):
            return v
        if "__float__" in v:
            return float(v["__float__"])
        if "__tuple__" in v:
            return tuple(dec(x) for x in v["__tuple__"])
        if "__dict__" in v:
            return {dec(k): dec(x) for k, x in v["__dict__"]}
        if "__tensor__" in v:
            tensor = tensors[v["__tensor__"]]
            if "device" in v and _device_available(v["device"]):
                tensor = tensor.to(v["device"])
            return _view(tensor, v["view"]) if "view" in v else tensor
        if "__ndarray__" in v:
            return tensors[v["__ndarray__"]].numpy()
        if "__dtype__" in v:
            import torch

            return getattr(torch, v["__dtype__"])
        if "__handle__" in v:
            if resolve_handle is None:
                raise WireError("a handle arrived where only data is allowed")
            return resolve_handle(v["__handle__"], v.get("type", "object"))
        return {k: dec(x) for k, x in v.items()}

    return dec(data)


def _span(tensor):
    """(data, view): a contiguous tensor travels as itself (view None); any other (x.T, a
    slice, an expand) as the 1-D run of memory it covers plus its sizes and strides in that
    run, so that it arrives as the same view: code that must honour strides gets them."""
    if tensor.is_contiguous() or tensor.numel() == 0:
        return tensor.contiguous(), None
    span = 1 + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride()))
    data = tensor.as_strided((span,), (1,), tensor.storage_offset()).clone()
    return data, {"size": list(tensor.shape), "stride": list(tensor.stride())}


def _view(data, view) -> Any:
    """The view `_span` described, checked first: sizes and strides that would reach past
    the data (from the other, untrusted side) are a malformed message."""
    size = view.get("size") if isinstance(view, dict) else None
    stride = view.get("stride") if isinstance(view, dict) else None
    whole = lambda xs: isinstance(xs, list) and all(type(x) is int and x >= 0 for x in xs)  # noqa: E731
    if not (whole(size) and whole(stride) and len(size) == len(stride) <= 64 and data.dim() == 1) or (
            0 not in size and 1 + sum((n - 1) * s for n, s in zip(size, stride)) > data.numel()):
        raise WireError("a malformed tensor view")
    return data.as_strided(size, stride)


def _device_available(device: str) -> bool:
    import torch

    return device.startswith("cuda") and torch.cuda.is_available()


def send(stream: BinaryIO, document: dict, tensors: dict | None = None) -> None:
    body = json.dumps(document, allow_nan=False).encode()
    blob = b""
    if tensors:
        from safetensors.torch import save

        blob = save(tensors)
    stream.write(_LEN.pack(len(body)) + body + _LEN.pack(len(blob)) + blob)
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("the other side closed the wire")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv(stream: BinaryIO, max_document: int = MAX_DOCUMENT, max_tensors: int = MAX_TENSORS) -> tuple[dict, dict]:
    """One message; a frame over its cap is refused before a byte of it is read."""
    frames = []
    for cap in (max_document, max_tensors):
        (n,) = _LEN.unpack(_read_exact(stream, _LEN.size))
        if n > cap:
            raise WireError(f"frame of {n} bytes is over the {cap}-byte limit")
        frames.append(_read_exact(stream, n))
    try:
        document = json.loads(frames[0])
    except ValueError as exc:
        raise WireError(f"malformed JSON frame: {exc}") from None
    tensors = {}
    if frames[1]:
        from safetensors.torch import load

        try:
            tensors = load(frames[1])
        except Exception as exc:  # safetensors raises its own error types
            raise WireError(f"malformed tensor frame: {exc}") from None
    return document, tensors
