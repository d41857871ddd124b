"""Negative control: the decode instance admits requests without waiting for their KV cache."""
# targets: disaggregation


class DecodeScheduler(ContinuousBatchingScheduler):
    pass
