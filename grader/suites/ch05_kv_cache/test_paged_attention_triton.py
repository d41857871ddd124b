"""Exercise 5b: the Triton paged-attention kernel. On the CPU it runs in Triton's
interpreter (TRITON_INTERPRET=1, set by the notebook's setup cell) on small shapes, so
each correctness test takes seconds; on a GPU it must also read K and V at a share of the
bandwidth that the reference kernel reaches in the same run, on the same card."""
import statistics

import pytest
import torch

from course_config import THRESHOLDS
from grader.student import reference_worker
from _paged_data import check, dense_oracle, random_layout

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where the kernel runs
F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16
CONFIGS = [  # (B, H, H_kv, D, block_size, max_len): group sizes 1 to 8, lengths rarely whole blocks
    (2, 4, 2, 16, 4, 11), (3, 2, 1, 8, 8, 20), (2, 6, 3, 16, 4, 7), (2, 8, 1, 32, 16, 200),
    (2, 4, 4, 32, 8, 45), (2, 8, 2, 16, 8, 40)]
HALF_CONFIGS = [(F16, (3, 16, 2, 64, 16, 150)), (F16, (2, 4, 4, 128, 32, 70))] + (
    # Triton's CPU interpreter multiplies bfloat16 wrongly in tl.dot (numpy has no bfloat16):
    # bfloat16 is graded where the compiled kernel runs.
    [(BF16, (3, 12, 4, 64, 16, 150))] if DEVICE.type == "cuda" else [])
# On a GPU, at 8k context, the kernel must read K and V at least at this share of the rate
# the reference kernel (split-KV, one program per KV head) reaches in the same run. The
# reference is built for >= 70 % of the calibrated copy bandwidth on an H100/H200; the
# per-query-head design it replaced measured 5-9 % there (issue 10), so a ratio of 0.5
# separates them with room on both sides. Per-call costs outside the kernel (sending the
# query, returning the output) are the same on both sides and only soften the ratio.
MIN_BANDWIDTH_VS_REFERENCE = THRESHOLDS["ch05_kv_cache/triton_bandwidth_vs_reference"].minimum


@pytest.mark.points(2)
@pytest.mark.timeout(120)
def test_matches_dense_on_random_layouts(student):
    """float32: random non-contiguous layouts, partly filled last blocks, GQA groups of 1 to 8"""
    gen = torch.Generator().manual_seed(508)
    for config in CONFIGS:
        args = random_layout(gen, *config)
        got = student.paged_attention_triton(*(a.to(DEVICE) for a in args))
        check(got, dense_oracle(*args), f"config (B, H, H_kv, D, block, max_len) = {config}")


@pytest.mark.points(1)
@pytest.mark.timeout(120)
def test_half_precision(student):
    """float16 (and bfloat16 on a GPU): output in the query's dtype, within half-precision error"""
    gen = torch.Generator().manual_seed(510)
    for dtype, config in HALF_CONFIGS:
        args = random_layout(gen, *config, dtype=dtype)
        got = student.paged_attention_triton(*(a.to(DEVICE) for a in args))
        assert isinstance(got, torch.Tensor) and got.dtype == dtype, (
            f"{dtype}: return the output in the query's dtype, got "
            f"{got.dtype if isinstance(got, torch.Tensor) else type(got).__name__}")
        check(got, dense_oracle(*args), f"{dtype}, config (B, H, H_kv, D, block, max_len) = {config}",
              atol=2e-2 if dtype == F16 else 6e-2)


def unused_slots_hold_nan(key_cache, value_cache, tables, lens):
    """Every slot that holds none of a sequence's tokens (tails of last blocks, free blocks) := NaN."""
    block_size = key_cache.shape[1]
    used = torch.zeros(key_cache.shape[:2], dtype=torch.bool)
    for b, length in enumerate(lens.tolist()):
        tokens = torch.arange(length)
        used[tables[b, tokens // block_size], tokens % block_size] = True
    key_cache[~used] = float("nan")
    value_cache[~used] = float("nan")


@pytest.mark.points(1)
@pytest.mark.timeout(120)
def test_unused_slots_holding_nan_are_ignored(student):
    """slots past the context length hold NaN (as freed memory may): the output is unaffected"""
    gen = torch.Generator().manual_seed(511)
    for config, full in [((3, 8, 2, 32, 16, 75), True), ((4, 4, 1, 16, 8, 13), False)]:
        q, kc, vc, tables, lens = random_layout(gen, *config, full=full)  # 75 = 4 blocks + 11 slots
        unused_slots_hold_nan(kc, vc, tables, lens)
        got = student.paged_attention_triton(*(a.to(DEVICE) for a in (q, kc, vc, tables, lens)))
        assert isinstance(got, torch.Tensor) and not got.isnan().any(), (
            f"config {config}: NaN in the output. Slots of a last block past the context length "
            f"may hold anything: mask the loaded keys and values (other=0.0), not only the scores, "
            f"since 0 * NaN = NaN in p @ V")
        check(got, dense_oracle(q, kc, vc, tables, lens), f"NaN in unused slots, config {config}")


@pytest.fixture
def reference_kernel():
    """The instructors' kernel, in a worker of its own (see `reference_worker`)."""
    with reference_worker("ch05_kv_cache", "setup", "paged_attention_triton_solution") as reference:
        yield reference


@pytest.mark.points(2)
@pytest.mark.needs("cuda")
@pytest.mark.fresh_worker
@pytest.mark.timeout(300)
def test_bandwidth_against_the_reference_kernel(student, baseline, reference_kernel):
    """on a GPU: at 8k context, fp16, K/V read at >= 0.5x the reference kernel's rate, same run"""
    gen = torch.Generator().manual_seed(509)
    B, H, H_kv, D, block_size, context = 8, 32, 8, 128, 16, 8192
    small = random_layout(gen, 2, 8, 2, 64, 16, 300, dtype=F16)
    check(student.paged_attention_triton(*(a.cuda() for a in small)), dense_oracle(*small),
          "fp16 on the GPU, before timing", atol=2e-2)
    q, kc, vc, tables, lens = random_layout(gen, B, H, H_kv, D, block_size, context, dtype=F16, full=True)
    staged = {side: [side.keep(t.cuda()) for t in (kc, vc, tables, lens)] for side in (student, reference_kernel)}
    kernels = {student: student.paged_attention_triton, reference_kernel: reference_kernel.paged_attention_triton}
    for side, kernel in kernels.items():  # compile at these shapes before any clock runs
        kernel(q.cuda(), *staged[side])

    def per_call_seconds(side):
        """Time of one call: 110 calls minus 10 calls, each on a fresh query, so the request's
        fixed cost cancels; the judge holds the clock, the worker synchronises the device."""
        times, outputs = [], None
        for n in (10, 110):
            queries = [torch.randn(q.shape, generator=gen).to(F16) for _ in range(n)]
            seconds, outputs = kernels[side].timed([((query.cuda(), *staged[side]), {}) for query in queries])
            times.append(seconds)
        return (times[1] - times[0]) / 100, queries, outputs

    ratios, seconds = [], {student: [], reference_kernel: []}
    for round_index in range(5):  # interleaved; the two sides alternate which goes first
        order = (student, reference_kernel) if round_index % 2 else (reference_kernel, student)
        for side in order:
            per_call, queries, outputs = per_call_seconds(side)
            seconds[side].append(per_call)
            if side is student:
                i = int(torch.randint(len(queries), (1,), generator=gen))
                check(outputs[i].cpu(), dense_oracle(queries[i], kc, vc, tables, lens), "while timing", atol=2e-2)
        ratios.append(seconds[reference_kernel][-1] / seconds[student][-1])
    ratio = statistics.median(ratios)
    # Calibrated in the baseline worker, where no student code runs: printed for the judge's
    # log (and make gpu-check), not graded.
    peak = baseline.library("llmopt.device:calibrate")("cuda").copy_bytes_per_s.value()
    bytes_read = 2 * B * context * H_kv * D * 2  # K and V, fp16
    rates = {side: bytes_read / statistics.median(s) for side, s in seconds.items()}
    print(f"bandwidth: student {rates[student] / 1e9:.0f} GB/s ({rates[student] / peak:.0%} of copy), reference "
          f"{rates[reference_kernel] / 1e9:.0f} GB/s ({rates[reference_kernel] / peak:.0%}); median ratio {ratio:.2f}")
    assert ratio >= MIN_BANDWIDTH_VS_REFERENCE, (
        f"your kernel read K and V at {rates[student] / 1e9:.0f} GB/s, {ratio:.2f}x the reference kernel's "
        f"{rates[reference_kernel] / 1e9:.0f} GB/s on this GPU (median of 5 interleaved rounds); at least "
        f"{MIN_BANDWIDTH_VS_REFERENCE}x is expected. Load each K/V tile once for the whole query group "
        f"and split long contexts into partitions so that every SM has work")
