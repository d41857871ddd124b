"""Negative control: the clock is read without synchronising the device (it times the launch only)."""
# targets: harness
import statistics


def time_calls(fn, *, synchronize, clock, warmup=3, repeats=10):
    if warmup < 0 or repeats < 1:
        raise ValueError("bad counts")
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = clock()
        fn()
        samples.append(clock() - start)
    return samples


def summarize(samples):
    if not samples:
        raise ValueError("empty")
    m = statistics.median(samples)
    mad = statistics.median(abs(x - m) for x in samples)
    return {"median_s": m, "mad_s": mad, "relative_noise": mad / m}
