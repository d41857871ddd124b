"""Negative control: synchronises after each call but not before starting the clock: warm-up work leaks in."""
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
        synchronize()
        samples.append(clock() - start)
    return samples


def summarize(samples):
    if not samples:
        raise ValueError("empty")
    m = statistics.median(samples)
    mad = statistics.median(abs(x - m) for x in samples)
    return {"median_s": m, "mad_s": mad, "relative_noise": mad / m}
