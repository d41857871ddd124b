"""Exercise 6: the tiled Triton matmul, matmul_triton(a, b) = a @ b. On the CPU it runs in
Triton's interpreter (TRITON_INTERPRET=1, set by the notebook's setup cell) on small shapes
that no power of two divides, so every tile edge (M, N and K) is crossed whatever blocks the
launcher picks; on a GPU the compiled kernel is checked at large, odd sizes in float16,
bfloat16 and float32.

The judge makes every input and computes the oracle itself, in float64: nothing the student
returns is trusted beyond being an (M, N) tensor of the inputs' dtype. A view (x.T, a slice)
reaches the worker as the same view, strides and all (grader/sandbox/wire.py), so
`test_strided_inputs` catches a launcher that assumes row-major operands."""
import pytest
import torch

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where the kernel runs
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
# max |error| / max |output|: float32 accumulation, one rounding of the output to its dtype
TOLERANCE = {F32: 1e-5, F16: 2e-3, BF16: 1e-2}


def check(student, a, b, what):
    got = student.matmul_triton(a.to(DEVICE), b.to(DEVICE))
    want = a.double() @ b.double()
    assert isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(want.shape) and got.dtype == a.dtype, (
        f"{what}: return C = a @ b of shape (M, N) = {tuple(want.shape)} in the inputs' dtype {a.dtype}, got "
        f"{(tuple(got.shape), got.dtype) if isinstance(got, torch.Tensor) else type(got).__name__}")
    got = got.cpu().double()
    assert torch.isfinite(got).all(), (
        f"{what}: the output holds inf or NaN. A load without a mask reads whatever lies past the edge of a "
        f"matrix: mask rows past M, columns past N and, in the last step of the K loop, the lanes past K")
    error = ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()
    assert error <= TOLERANCE[a.dtype], (
        f"{what}: the largest error is {error:.1e} of the largest output, more than {TOLERANCE[a.dtype]:.0e}. Mask "
        f"rows past M and columns past N, and in the last step of the K loop the lanes past K in BOTH tiles "
        f"(other=0.0); accumulate in a float32 tl.zeros; use each matrix's two strides; multiply float32 as "
        f"float32 (tl.dot(..., input_precision='ieee'), not TF32)")


def pair(gen, m, n, k, dtype):
    return torch.randn(m, k, generator=gen).to(dtype), torch.randn(k, n, generator=gen).to(dtype)


@pytest.mark.points(3)
@pytest.mark.timeout(90)
def test_matmul(student):
    """float32, (M, N, K) from 1 x 1 x 1 to 100 x 70 x 130, K no power of two divides, a GEMV and a single column"""
    gen = torch.Generator().manual_seed(360)
    for m, n, k in ((1, 1, 1), (5, 7, 3), (33, 17, 65), (64, 48, 100), (100, 70, 130), (1, 96, 257),
                    (48, 1, 40), (16, 16, 16)):
        check(student, *pair(gen, m, n, k, F32), f"(M, N, K) = {(m, n, k)} float32")


@pytest.mark.points(1)
@pytest.mark.timeout(60)
def test_half_precision(student):
    """float16 (and bfloat16 on a GPU) inputs: C in the inputs' dtype"""
    gen = torch.Generator().manual_seed(361)
    cases = [((37, 29, 300), F16), ((8, 64, 96), F16)]
    if DEVICE.type == "cuda":  # the interpreter's tl.dot mishandles bfloat16: graded where it compiles
        cases += [((37, 29, 300), BF16), ((130, 70, 65), BF16)]
    for (m, n, k), dtype in cases:
        check(student, *pair(gen, m, n, k, dtype), f"(M, N, K) = {(m, n, k)} {dtype}")


@pytest.mark.points(1)
@pytest.mark.timeout(60)
def test_strided_inputs(student):
    """the products of a linear layer (x @ W.T), of a slice of a wider matrix, of two transposed operands"""
    gen = torch.Generator().manual_seed(362)
    weight = torch.randn(45, 70, generator=gen)  # a linear layer's (out, in) weight
    x = torch.randn(21, 70, generator=gen)
    check(student, x, weight.T, "b = weight.T, weight (45, 70): b's strides are (1, 70)")
    wide = torch.randn(30, 120, generator=gen)
    check(student, wide[:, 10:85], torch.randn(75, 19, generator=gen), "a = wide[:, 10:85]: a's row stride is 120")
    check(student, torch.randn(50, 33, generator=gen).T, torch.randn(40, 50, generator=gen).T,
          "a and b both transposed views, (33, 50) @ (50, 40)")


@pytest.mark.points(1)
@pytest.mark.timeout(60)
def test_accumulates_in_float32(student):
    """float16 dot products whose running sums pass 4,000 before they cancel: a float16 accumulator loses them"""
    gen = torch.Generator().manual_seed(363)
    m, n, k = 24, 20, 1000
    a = (1 + 0.1 * torch.randn(m, k, generator=gen)).half()
    b = torch.randn(k, n, generator=gen)
    b[: k // 2] += 8  # the first half of K adds about +8 per term, the second half about -8
    b[k // 2:] -= 8
    check(student, a, b.half(), f"(M, N, K) = {(m, n, k)} float16, running sums near 4,000 that cancel")


@pytest.mark.points(2)
@pytest.mark.needs("cuda")
@pytest.mark.timeout(120)
def test_compiled_kernel_on_gpu(student):
    """on a GPU: the compiled kernel at large, odd sizes, bfloat16, float16 with a transposed weight, float32"""
    gen = torch.Generator().manual_seed(364)
    check(student, *pair(gen, 1000, 999, 1001, BF16), "compiled, (1000, 999, 1001) bfloat16")
    weight = torch.randn(1536, 4099, generator=gen).half()
    check(student, torch.randn(777, 4099, generator=gen).half(), weight.T,
          "compiled, x (777, 4099) @ weight.T, weight (1536, 4099) float16")
    check(student, *pair(gen, 300, 200, 1000, F32), "compiled, (300, 200, 1000) float32 (IEEE, not TF32)")
    check(student, *pair(gen, 1, 4096, 4096, BF16), "compiled, a GEMV (1, 4096, 4096) bfloat16")
