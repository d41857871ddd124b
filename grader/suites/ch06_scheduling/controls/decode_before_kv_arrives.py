"""Negative control: the decode instance admits requests without waiting for their KV cache."""


class DecodeScheduler(ContinuousBatchingScheduler):
    pass
