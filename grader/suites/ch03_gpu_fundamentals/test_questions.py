"""The chapter's questions (思考题): Q1 and Q2 are numbers the judge computes itself, Q3 a
choice."""
import pytest

from grader.suites._answers import number
from grader.suites.ch03_gpu_fundamentals._shapes import LLAMA_3_1_8B, block_linears


@pytest.mark.points(1)
def test_h200_decode_bound(student):
    """Q1: Llama-3.1-8B BF16 batch 1 on an H200, weights only"""
    c = LLAMA_3_1_8B
    weight_bytes = (c["num_hidden_layers"] * block_linears(c) + c["vocab_size"] * c["hidden_size"]) * 2
    want = 4.8e12 / weight_bytes
    got = number(student.q1_h200_decode_bound(), "q1_h200_decode_bound()")
    assert abs(got - want) <= 0.01 * want, (
        f"Q1: {got:g} is not right: bandwidth over the bytes of every block linear and the LM head in BF16")


@pytest.mark.points(2)
def test_compute_bound_batch(student):
    """Q2: the smallest batch at which the down projection reaches the H100's ridge"""
    ridge = 989.4e12 / 3.35e12
    n, k = 4096, 14336
    want = next(b for b in range(1, 10_000) if 2 * b * n * k / ((b * k + k * n + b * n) * 2) >= ridge)
    got = student.q2_compute_bound_batch()
    assert type(got) is int, f"Q2: return a whole batch (an int), got {got!r:.60}"
    assert got == want, (f"Q2: {got} is not right: the intensity of a (B x 14,336) @ (14,336 x 4,096) BF16 matmul "
                         f"counts the activations' bytes too, so it is a little below B")


@pytest.mark.points(1)
def test_small_model_on_gpu(student):
    """Q3: 20 MB at 3.35 TB/s against 80 launches of 5 us"""
    got = student.q3_small_model_on_gpu()
    assert got in ("a", "b", "c"), f'Q3: return "a", "b" or "c", got {got!r:.40}'
    assert got == "c", "Q3: not that one: compare the time to read 20 MB with 80 launches of 5 us each"


# Q4 and Q5 read traces: (name, self_us) pairs, one per call. The judge's rule, written out
# again here (never the student's): GEMM operators are aten::...mm; attention operators
# have "attention" in their name; everything else is the third group.
def groups(trace):
    out = {"a": 0.0, "b": 0.0, "c": 0.0}
    for name, us in trace:
        out["a" if name.startswith("aten::") and name.endswith("mm") else "b" if "attention" in name else "c"] += us
    return out


def recorded_decode_trace():
    """A decode step of the course model as torch.profiler records it on a CPU (names as
    recorded, self times made up): wrappers with self time of their own, many small calls."""
    trace = []
    for _layer in range(4):
        for _projection in range(7):  # q, k, v, o, gate, up, down
            trace += [("aten::linear", 4.0), ("aten::matmul", 3.0), ("aten::t", 1.5), ("aten::mm", 55.0)]
        trace += [("aten::scaled_dot_product_attention", 6.0),
                  ("aten::_scaled_dot_product_flash_attention_for_cpu", 140.0)]
        trace += [("aten::rms_norm", 9.0), ("aten::mul", 3.5), ("aten::add", 3.0), ("aten::cat", 12.0),
                  ("aten::view", 0.8), ("aten::transpose", 1.1), ("aten::silu", 6.0), ("aten::empty", 1.0)] * 2
    trace += [("aten::linear", 4.0), ("aten::matmul", 3.0), ("aten::addmm", 310.0), ("aten::embedding", 7.0)]
    return trace


@pytest.mark.points(2)
def test_gemm_share_of_trace(student):
    """Q4: GEMM operators' share of self time, on a recorded-like decode trace and on made ones"""
    gpu_like = [("aten::bmm", 120.0), ("aten::baddbmm", 30.0), ("aten::linear", 40.0), ("aten::matmul", 25.0),
                ("aten::_efficient_attention_forward", 80.0), ("cudaLaunchKernel", 95.0), ("aten::mm", 0.0)]
    cases = [("a recorded decode step (4 layers)", recorded_decode_trace()), ("a GPU-like trace", gpu_like),
             ("one GEMM call", [("aten::mm", 12.5)]), ("no GEMM at all", [("aten::add", 3.0), ("aten::cat", 1.0)]),
             ("a trace of zero self time", [("aten::mm", 0.0), ("aten::view", 0.0)]), ("an empty trace", [])]
    for what, trace in cases:
        total = sum(us for _, us in trace)
        want = groups(trace)["a"] / total if total else 0.0
        got = number(student.q4_gemm_share(trace), f"q4_gemm_share(<{what}>)")
        assert abs(got - want) <= 1e-9, (
            f"Q4, {what}: {got:.6f} is not right. Count only operators named aten::...mm (their self time over "
            f"the self time of every call); aten::linear and aten::matmul only call them")


@pytest.mark.points(2)
def test_where_time_goes(student):
    """Q5: the group with the most self time, on traces where each group wins, and a tie"""
    few_slow_gemms = [("aten::mm", 300.0)] * 3 + [("aten::add", 2.0), ("aten::view", 1.0)] * 200
    wrappers_decide = [("aten::mm", 34.0), ("aten::_scaled_dot_product_flash_attention_for_cpu", 30.0),
                       ("aten::linear", 10.0), ("aten::matmul", 6.0), ("aten::add", 20.0)]
    attention_heavy = [("aten::mm", 50.0), ("aten::_flash_attention_forward", 70.0), ("aten::add", 40.0)] * 3
    cases = [("a recorded decode step (4 layers)", recorded_decode_trace()),
             ("3 slow GEMM calls against 400 fast small ones", few_slow_gemms),
             ("wrappers (aten::linear, aten::matmul) are not GEMMs", wrappers_decide),
             ("an attention-heavy trace", attention_heavy),
             ("a tie between GEMMs and attention", [("aten::addmm", 5.0), ("my_attention_kernel", 5.0)])]
    for what, trace in cases:
        totals = groups(trace)
        want = max(totals, key=lambda letter: (totals[letter], -ord(letter)))
        got = student.q5_where_time_goes(trace)
        assert got in ("a", "b", "c"), f'Q5: return "a", "b" or "c", got {got!r:.40}'
        assert got == want, (f"Q5, {what}: not that one. Add up self time (not calls) per group: aten::...mm, "
                             f"names with 'attention', everything else; a tie goes to the earlier letter")
