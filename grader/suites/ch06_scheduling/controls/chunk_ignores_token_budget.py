"""Negative control: chunked prefill that admits new requests with their whole prompt,
ignoring the token budget."""
# targets: chunked_prefill


class ChunkedPrefillScheduler(ChunkedPrefillScheduler):  # the control
    def admit(self, batch, now, token_budget=None):
        super().admit(batch, now)  # BUG: the budget is not passed on
