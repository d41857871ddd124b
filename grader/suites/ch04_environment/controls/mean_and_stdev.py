"""Negative control: a correct timing loop summarised by the mean and the standard deviation."""
# targets: harness
import statistics


def time_calls(fn, *, synchronize, clock, warmup=3, repeats=10):
    if warmup < 0 or repeats < 1:
        raise ValueError("bad counts")
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        synchronize()
        start = clock()
        fn()
        synchronize()
        samples.append(clock() - start)
    return samples


def summarize(samples):
    if not samples:
        raise ValueError("empty")
    mean = statistics.fmean(samples)
    std = statistics.pstdev(samples)
    return {"median_s": mean, "mad_s": std, "relative_noise": std / mean}
