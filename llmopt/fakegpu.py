"""A simulated asynchronous accelerator on a virtual clock: the classic timing bugs of
chapter 4, reproducible on any CPU and exact to the nanosecond.

    gpu = FakeGPU(kernel_s=2e-3, launch_s=1e-5, compile_s=0.3, outliers={7: 0.05})
    gpu.kernel()        # queues 2 ms of work; the host returns after 10 us, like a CUDA launch
    gpu.synchronize()   # the host waits until the queue is empty
    gpu.clock()         # the host's clock, in seconds (virtual: nothing really sleeps)

It behaves like a real GPU in the three ways that break naive benchmarks:

- a kernel launch returns before the work runs, so a clock read without a synchronize
  measures how fast the host queues work, not how fast the device does it;
- the first call pays a one-off compilation (JIT, autotuning, lazy allocation) on the host;
- a call listed in `outliers` (by its index among all calls, warm-up included) runs that
  many seconds longer, like a repeat preempted by another process.

No real time passes, so a test can say exactly what a correct harness must report.
"""

from __future__ import annotations


class FakeGPU:
    """One device with one in-order queue, and the host that feeds it."""

    def __init__(self, kernel_s: float = 2e-3, launch_s: float = 1e-5, compile_s: float = 0.3,
                 outliers: dict[int, float] | None = None):
        if min(kernel_s, launch_s, compile_s) < 0:
            raise ValueError("kernel_s, launch_s and compile_s are durations: >= 0 seconds")
        self.kernel_s, self.launch_s, self.compile_s = kernel_s, launch_s, compile_s
        self.outliers = {int(k): float(v) for k, v in (outliers or {}).items()}
        self.now = 0.0  # the host's clock
        self.busy_until = 0.0  # when the device finishes the work queued so far
        self.calls = 0  # kernels launched so far
        self.syncs = 0  # synchronize() calls so far

    def clock(self) -> float:
        """The host's clock in seconds (time.perf_counter's role)."""
        return self.now

    def kernel(self) -> None:
        """Launch one kernel: the host pays compilation (first call only) and the launch,
        the device runs `kernel_s` (+ the call's outlier) once the work before it is done."""
        if self.calls == 0:
            self.now += self.compile_s
        self.now += self.launch_s
        start = max(self.now, self.busy_until)
        self.busy_until = start + self.kernel_s + self.outliers.get(self.calls, 0.0)
        self.calls += 1

    def synchronize(self) -> None:
        """Block the host until the device has finished everything queued (cudaDeviceSynchronize)."""
        self.syncs += 1
        self.now = max(self.now, self.busy_until)

    def __repr__(self) -> str:
        return (f"FakeGPU(kernel_s={self.kernel_s}, launch_s={self.launch_s}, "
                f"compile_s={self.compile_s}, outliers={self.outliers}, calls={self.calls})")
