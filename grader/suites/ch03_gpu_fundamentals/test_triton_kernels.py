"""Exercise 4: the Triton vector add and fused RMSNorm. On the CPU they run in Triton's
interpreter (TRITON_INTERPRET=1, set by the notebook's setup cell) on small shapes; on a
GPU the compiled kernels are checked on large, odd shapes in half precision too.

The judge makes every input and computes the oracle itself, in float64."""
import pytest
import torch

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where the kernels run
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16


def rms_oracle(x, weight, eps):
    xd = x.double()
    return xd * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + eps) * weight.double()


def check_rms(student, x, weight, eps, tolerance, what):
    got = student.rms_norm_triton(x.to(DEVICE), weight.to(DEVICE), eps)
    assert isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(x.shape) and got.dtype == x.dtype, (
        f"{what}: return a tensor of x's shape {tuple(x.shape)} and dtype {x.dtype}, got "
        f"{(tuple(got.shape), got.dtype) if isinstance(got, torch.Tensor) else type(got).__name__}")
    got = got.cpu().double()
    assert torch.isfinite(got).all(), f"{what}: the output holds inf or NaN (square and sum in float32)"
    want = rms_oracle(x, weight, eps)
    error = ((got - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()
    assert error <= tolerance, (
        f"{what}: the largest error is {error:.1e} of the largest output, more than {tolerance:.0e}. Divide the "
        f"sum of squares by D (not by the block size), mask the lanes past D, add eps inside the square root, "
        f"and accumulate in float32")


@pytest.mark.points(2)
@pytest.mark.timeout(60)
def test_vector_add(student):
    """sizes that no block divides, one element, float32 and float16, exact"""
    gen = torch.Generator().manual_seed(340)
    for n, dtype in ((1, F32), (1023, F32), (2048, F32), (5001, F16), (12_289, F32), (3, F16)):
        x, y = torch.randn(n, generator=gen).to(dtype), torch.randn(n, generator=gen).to(dtype)
        got = student.vector_add(x.to(DEVICE), y.to(DEVICE))
        assert isinstance(got, torch.Tensor) and got.shape == x.shape and got.dtype == dtype, (
            f"n = {n}, {dtype}: return a tensor of the inputs' shape and dtype")
        got = got.cpu()
        assert torch.equal(got, x + y), (
            f"n = {n}, {dtype}: {int((got != x + y).sum())} of {n} elements differ from x + y. Mask the lanes of "
            f"the last block (offsets < n_elements) and launch cdiv(n, BLOCK) programs")


@pytest.mark.points(3)
@pytest.mark.timeout(90)
def test_rms_norm(student):
    """rows of 1 to 1,000 values (not powers of two), batched leading dims, several eps, float32 and float16"""
    gen = torch.Generator().manual_seed(341)
    cases = [((1, 256), F32, 1e-5, 1e-6), ((3, 100), F32, 1e-6, 1e-6), ((2, 3, 130), F32, 1e-2, 1e-6),
             ((5, 1000), F32, 1e-5, 1e-6), ((1, 1), F32, 1e-5, 1e-6), ((4, 384), F16, 1e-5, 2e-3),
             ((2, 2, 200), F16, 1e-3, 2e-3)]
    for shape, dtype, eps, tolerance in cases:
        x = (torch.randn(shape, generator=gen) * torch.rand(shape[:-1] + (1,), generator=gen) * 4).to(dtype)
        weight = torch.randn(shape[-1], generator=gen).to(dtype)
        check_rms(student, x, weight, eps, tolerance, f"x {shape} {dtype}, eps {eps}")


@pytest.mark.points(1)
@pytest.mark.timeout(60)
def test_rms_norm_edge_values(student):
    """float16 rows with values above 255.99 (their squares overflow float16) and an all-zero row"""
    gen = torch.Generator().manual_seed(342)
    x = torch.randn(3, 96, generator=gen) * 40
    x[0] = 1000.0 * torch.sign(x[0])
    x[1] = 0.0  # eps alone keeps this finite: the output is 0
    check_rms(student, x.half(), (torch.rand(96, generator=gen) + 0.5).half(), 1e-5, 2e-3,
              "float16 rows of +-1000, a zero row")


@pytest.mark.points(2)
@pytest.mark.needs("cuda")
@pytest.mark.timeout(120)
def test_compiled_kernels_on_gpu(student):
    """on a GPU: compiled kernels at large, odd sizes, float16 and bfloat16"""
    gen = torch.Generator().manual_seed(343)
    for n, dtype in ((1 << 22, F32), ((1 << 20) + 17, F16), (999_999, BF16)):
        x, y = torch.randn(n, generator=gen).to(dtype), torch.randn(n, generator=gen).to(dtype)
        got = student.vector_add(x.cuda(), y.cuda())
        assert torch.equal(got.cpu(), x + y), f"vector add, n = {n}, {dtype}, compiled: differs from x + y"
    for shape, dtype, tolerance in (((4096, 4096), F16, 2e-3), ((333, 5120), BF16, 1e-2), ((64, 8000), F32, 1e-5)):
        x = torch.randn(shape, generator=gen).to(dtype)
        check_rms(student, x, torch.randn(shape[-1], generator=gen).to(dtype), 1e-5, tolerance,
                  f"compiled, x {shape} {dtype}")
