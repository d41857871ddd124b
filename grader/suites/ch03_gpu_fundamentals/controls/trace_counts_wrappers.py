"""Negative control: the trace questions count aten::linear and aten::matmul as GEMMs (their self time is
only the call into aten::mm) and pick the group with the most calls rather than the most self time."""
# targets: questions::test_gemm_share_of_trace


def _is_gemm(name):
    return name.endswith("mm") or name in ("aten::linear", "aten::matmul")  # BUG: the wrappers too


def q4_gemm_share(trace):  # negative control
    total = sum(self_us for _, self_us in trace)
    return sum(self_us for name, self_us in trace if _is_gemm(name)) / total if total else 0.0


def q5_where_time_goes(trace):  # negative control
    calls = {"a": 0, "b": 0, "c": 0}
    for name, _ in trace:
        calls["a" if _is_gemm(name) else "b" if "attention" in name else "c"] += 1  # BUG: calls, not time
    return max(calls, key=lambda letter: (calls[letter], -ord(letter)))
