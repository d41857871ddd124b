"""Exercise 5: the fused Triton softmax, softmax_triton(x), over the last dimension. On the
CPU it runs in Triton's interpreter (TRITON_INTERPRET=1, set by the notebook's setup cell)
on small shapes; on a GPU the compiled kernel is checked on large rows in half precision
too.

The judge makes every input and computes the oracle itself, in float64: nothing the student
returns is trusted beyond being a tensor of x's shape and dtype. A view (a slice of a wider
tensor) reaches the worker as the same view, strides and all (grader/sandbox/wire.py)."""
import pytest
import torch

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where the kernel runs
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
# max |error| of a probability: float32 math and one rounding of the output to its dtype
TOLERANCE = {F32: 2e-6, F16: 1e-3, BF16: 8e-3}


def oracle(x):
    xd = x.double()
    shifted = xd - xd.max(-1, keepdim=True).values
    return shifted.exp() / shifted.exp().sum(-1, keepdim=True)


def check(student, x, what):
    got = student.softmax_triton(x.to(DEVICE))
    assert isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(x.shape) and got.dtype == x.dtype, (
        f"{what}: return a tensor of x's shape {tuple(x.shape)} and dtype {x.dtype}, got "
        f"{(tuple(got.shape), got.dtype) if isinstance(got, torch.Tensor) else type(got).__name__}")
    got = got.cpu().double()
    assert torch.isfinite(got).all(), (
        f"{what}: the output holds inf or NaN. exp() of a large score overflows: subtract the row's maximum "
        f"before exp (the result does not change), in float32")
    error = (got - oracle(x)).abs().max().item()
    assert error <= TOLERANCE[x.dtype], (
        f"{what}: the largest error is {error:.1e}, more than {TOLERANCE[x.dtype]:.0e}. Load the lanes past the row "
        f"with other=-inf (0 adds exp(-max) to the sum for each of them, and becomes the maximum of a negative "
        f"row), divide by the sum of the whole row, and compute in float32")


@pytest.mark.points(2)
@pytest.mark.timeout(60)
def test_softmax(student):
    """rows of 1 to 1,000 scores (not powers of two), batched leading dims, all-negative rows, a slice of a wider
    tensor, float32 and float16"""
    gen = torch.Generator().manual_seed(344)
    cases = [((1, 1), F32), ((4, 7), F32), ((3, 100), F32), ((2, 3, 130), F32), ((5, 1000), F32),
             ((1, 512), F32), ((6, 257), F16), ((2, 2, 200), F16)]
    for shape, dtype in cases:
        x = (torch.randn(shape, generator=gen) * 3).to(dtype)
        check(student, x, f"x {shape} {dtype}")
    negative = -20 - 5 * torch.rand(3, 37, generator=gen)  # every score below -20
    check(student, negative, "rows whose scores are all negative, (3, 37) float32")
    wide = torch.randn(4, 50, generator=gen) * 3
    check(student, wide[:, 5:35], "x = wide[:, 5:35], rows 50 elements apart (pass x's row stride, or copy it)")


@pytest.mark.points(2)
@pytest.mark.timeout(60)
def test_large_magnitude_rows(student):
    """scores in the thousands (exp overflows float32 from 88.7), float16 rows near its limit, -inf scores"""
    gen = torch.Generator().manual_seed(345)
    big = torch.randn(4, 300, generator=gen) * 2000
    big[1] = 5000 + 2000 * torch.rand(300, generator=gen)  # every score large and positive: exp overflows
    big[2] = -5000 - 2000 * torch.rand(300, generator=gen)  # every score large and negative: exp underflows
    check(student, big, "scores of several thousand, (4, 300) float32")
    half = (torch.randn(3, 90, generator=gen) * 20000).clamp(-60000, 60000).half()
    check(student, half, "float16 scores up to 60,000, (3, 90)")
    scores = torch.randn(5, 64, generator=gen) * 4  # attention rows whose later positions are masked
    visible = torch.tensor([0, 5, 20, 41, 63])[:, None]  # row 0 sees one position only
    masked = scores.masked_fill(torch.arange(64)[None, :] > visible, float("-inf"))
    check(student, masked, "rows with -inf scores (masked positions), (5, 64) float32")


@pytest.mark.points(2)
@pytest.mark.needs("cuda")
@pytest.mark.timeout(120)
def test_compiled_kernel_on_gpu(student):
    """on a GPU: the compiled kernel on long rows, float16, bfloat16 and float32, large scores"""
    gen = torch.Generator().manual_seed(347)
    for shape, dtype, scale in (((4096, 4096), F16, 3.0), ((333, 5000), BF16, 3.0), ((64, 8000), F32, 3.0),
                                ((128, 1000), F32, 3000.0), ((8, 16384), F32, 3.0)):
        check(student, (torch.randn(shape, generator=gen) * scale).to(dtype), f"compiled, x {shape} {dtype}")
