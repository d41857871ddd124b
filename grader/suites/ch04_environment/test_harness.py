"""Exercise 4: the harness on a simulated asynchronous device (llmopt.fakegpu.FakeGPU, a
virtual clock: exact answers), then its statistics on fresh samples."""
import math
import random
import statistics

import pytest


def _gpu(student, **kwargs):
    return student.library("llmopt.fakegpu:FakeGPU")(**kwargs)


def _time(student, gpu, warmup, repeats):
    got = student.time_calls(gpu.kernel, synchronize=gpu.synchronize, clock=gpu.clock,
                             warmup=warmup, repeats=repeats)
    assert isinstance(got, list) and all(isinstance(x, (int, float)) for x in got), (
        f"time_calls returns a list of seconds (floats); got {got!r:.200}")
    return got


@pytest.mark.points(1.5)
@pytest.mark.parametrize("warmup, repeats, kernel_s, launch_s", [
    (3, 10, 2e-3, 1e-5), (1, 5, 7e-4, 3e-5), (5, 12, 1.3e-2, 2e-6)], ids=["3+10", "1+5", "5+12"])
def test_each_sample_is_one_call_of_work(student, warmup, repeats, kernel_s, launch_s):
    """after warm-up, every sample is launch + kernel time: no compilation, no queued work, no shortcut"""
    gpu = _gpu(student, kernel_s=kernel_s, launch_s=launch_s, compile_s=0.4)
    samples = _time(student, gpu, warmup, repeats)
    assert len(samples) == repeats, f"expected {repeats} samples, got {len(samples)}"
    truth = launch_s + kernel_s
    for i, sample in enumerate(samples):
        hint = ("it contains the first call's compilation: warm up before timing" if sample > 0.3 else
                "it is the launch time only: synchronize before reading the clock after the call"
                if sample < truth / 2 else
                "it contains work queued before the call: synchronize before starting the clock"
                if sample > truth * 1.01 else "")
        assert math.isclose(sample, truth, rel_tol=1e-6), (
            f"sample {i} is {sample * 1e3:.4f} ms, the call takes {truth * 1e3:.4f} ms: {hint}")


@pytest.mark.points(0.5)
def test_calls_exactly_warmup_plus_repeats(student):
    """fn is called warmup + repeats times, and warmup=0 is allowed"""
    for warmup, repeats in ((4, 6), (0, 3)):
        gpu = _gpu(student, kernel_s=1e-3, launch_s=1e-5, compile_s=0.0)
        _time(student, gpu, warmup, repeats)
        calls = gpu.calls.value()
        assert calls == warmup + repeats, f"warmup={warmup}, repeats={repeats}: fn was called {calls} times"


@pytest.mark.points(1)
def test_outliers_stay_in_their_own_sample(student):
    """a slow call shows in its own sample only, and in the right one"""
    gpu = _gpu(student, kernel_s=2e-3, launch_s=1e-5, compile_s=0.2, outliers={3 + 2: 0.04, 3 + 7: 0.011})
    samples = _time(student, gpu, 3, 9)
    want = [2.01e-3] * 9
    want[2] += 0.04
    want[7] += 0.011
    assert all(math.isclose(s, w, rel_tol=1e-6) for s, w in zip(samples, want)), (
        f"samples (ms) {[round(s * 1e3, 4) for s in samples]}, expected {[round(w * 1e3, 4) for w in want]}: "
        "time each call on its own, synchronised on both sides")


@pytest.mark.points(0.5)
def test_time_calls_rejects_bad_counts(student):
    """repeats < 1 or warmup < 0 raises ValueError"""
    for warmup, repeats in ((2, 0), (-1, 3)):
        gpu = _gpu(student)
        with pytest.raises(ValueError):
            student.time_calls(gpu.kernel, synchronize=gpu.synchronize, clock=gpu.clock,
                               warmup=warmup, repeats=repeats)
            raise AssertionError(f"time_calls(warmup={warmup}, repeats={repeats}) returned instead of raising")


@pytest.mark.points(1)
def test_summarize_is_median_and_mad(student):
    """median, median absolute deviation and their ratio on 30 fresh sample sets, with outliers"""
    rng = random.Random(404)
    for trial in range(30):
        n = rng.randint(1, 25)
        samples = [rng.uniform(1e-3, 2e-3) for _ in range(n)]
        for _ in range(rng.randint(0, n // 4)):
            samples[rng.randrange(n)] *= rng.uniform(5, 50)  # preempted repeats
        got = student.summarize(list(samples))
        assert isinstance(got, dict) and set(got) == {"median_s", "mad_s", "relative_noise"}, (
            f"summarize returns a dict with the keys median_s, mad_s, relative_noise; got {got!r:.200}")
        median = statistics.median(samples)
        mad = statistics.median(abs(x - median) for x in samples)
        for key, want in (("median_s", median), ("mad_s", mad), ("relative_noise", mad / median)):
            assert isinstance(got[key], (int, float)) and math.isclose(got[key], want, rel_tol=1e-9, abs_tol=1e-15), (
                f"{n} samples: {key} = {got[key]!r}, expected {want:.6g} "
                "(median; MAD = median of |x - median|; relative_noise = MAD / median)")
    assert len(samples) > 0


@pytest.mark.points(0.5)
def test_summarize_rejects_empty(student):
    """no samples raises ValueError"""
    with pytest.raises(ValueError):
        student.summarize([])
        raise AssertionError("summarize([]) returned instead of raising ValueError")
