"""Negative control: no warm-up: the first timed call pays the compilation."""
# targets: harness
import statistics


def time_calls(fn, *, synchronize, clock, warmup=3, repeats=10):
    if warmup < 0 or repeats < 1:
        raise ValueError("bad counts")
    samples = []
    for _ in range(repeats + warmup):
        synchronize()
        start = clock()
        fn()
        synchronize()
        samples.append(clock() - start)
    return samples[:repeats]


def summarize(samples):
    if not samples:
        raise ValueError("empty")
    m = statistics.median(samples)
    mad = statistics.median(abs(x - m) for x in samples)
    return {"median_s": m, "mad_s": mad, "relative_noise": mad / m}
