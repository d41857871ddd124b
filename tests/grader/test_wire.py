"""The wire between judge and worker carries data only, and rejects malformed frames."""

import io
import math

import numpy as np
import pytest
import torch

from grader.sandbox import wire


def round_trip(value):
    document, tensors = wire.encode(value)
    stream = io.BytesIO()
    wire.send(stream, {"value": document}, tensors)
    stream.seek(0)
    received, received_tensors = wire.recv(stream)
    return wire.decode(received["value"], received_tensors)


def test_plain_values_round_trip():
    value = {"a": [1, 2.5, "x", None, True], "b": (1, (2, 3)), "c": {"nested": [{"d": -1}]}}
    assert round_trip(value) == value


def test_non_finite_floats_and_odd_keys_round_trip():
    got = round_trip({"inf": math.inf, 3: "int key", "__tensor__": "not a tensor"})
    assert got["inf"] == math.inf and got[3] == "int key" and got["__tensor__"] == "not a tensor"
    assert math.isnan(round_trip(float("nan")))


def test_tensors_and_arrays_keep_dtype_shape_and_values():
    t = torch.randn(3, 4, dtype=torch.float64)
    a = np.arange(12, dtype=np.int32).reshape(3, 4)
    got = round_trip({"t": t, "a": a, "dtype": torch.bfloat16, "scalar": np.float32(1.5)})
    assert torch.equal(got["t"], t) and got["t"].dtype == torch.float64
    assert isinstance(got["a"], np.ndarray) and np.array_equal(got["a"], a) and got["a"].dtype == np.int32
    assert got["dtype"] is torch.bfloat16 and got["scalar"] == 1.5


def test_views_arrive_as_views_with_their_strides():
    """x.T, a slice of a wider tensor, an expand: the same sizes, strides and values on the
    other side (a kernel that ignores strides must be caught by a test), each view sent as
    the memory it spans, not the whole storage."""
    wide = torch.randn(6, 10)
    views = {"transposed": wide.T, "sliced": wide[:, 2:7], "expanded": torch.randn(3, 1).expand(3, 4),
             "stepped": wide[::2, 1::3]}
    document, tensors = wire.encode(views)
    assert tensors["t1"].numel() == 6 * 10 - 2 - 3  # wide[:, 2:7] spans from (0, 2) to (5, 6)
    got = round_trip(views)
    for name, view in views.items():
        assert got[name].stride() == view.stride() and torch.equal(got[name], view), name
    assert round_trip(wide).is_contiguous()


@pytest.mark.parametrize("view", [
    {"size": [3, 3], "stride": [3, 2]},  # reaches element 10 of 9
    {"size": [2], "stride": [-1]},
    {"size": [2.0], "stride": [1]},
    {"size": [2, 2], "stride": [1]},
    "not a view",
])
def test_a_view_that_reaches_past_its_data_is_malformed(view):
    document = {"__tensor__": "t0", "view": view}
    with pytest.raises(wire.WireError):
        wire.decode(document, {"t0": torch.zeros(9)})


def test_objects_become_handles_never_pickles():
    class Opaque:
        pass

    with pytest.raises(TypeError):
        wire.encode(Opaque())
    document, _ = wire.encode([Opaque()], handle_for=lambda obj: 7)
    assert document == [{"__handle__": 7, "type": "Opaque"}]
    with pytest.raises(wire.WireError):
        wire.decode(document, {})  # no resolver: a handle is not accepted as data


@pytest.mark.parametrize("frames", [
    b"\x00\x00\x00\x00\x00\x00\x00\x03{x}" + b"\x00" * 8,  # malformed JSON
    b"\x00\x00\x00\x00\x00\x00\x00\x02{}\x00\x00\x00\x00\x00\x00\x00\x04abcd",  # malformed tensors
    b"\xff" * 8,  # absurd length
])
def test_malformed_frames_raise_wire_error(frames):
    with pytest.raises(wire.WireError):
        wire.recv(io.BytesIO(frames))


def test_truncated_stream_is_end_of_file():
    with pytest.raises(EOFError):
        wire.recv(io.BytesIO(b"\x00\x00\x00"))
