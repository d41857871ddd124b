"""Negative control: the head reads tokens through an LM head of its own, trained from scratch, not through the target's frozen one."""
# targets: eagle_head


class EagleHead(EagleHead):  # negative control
    def __init__(self, target):
        super().__init__(target)
        D, V = target.weights.embed_tokens.shape[1], target.weights.embed_tokens.shape[0]
        self.lm_head = torch.nn.Linear(D, V, bias=False)  # BUG: a new, trained LM head

    def forward(self, tokens, features, positions, kv_cache=None, logits_at=None, decoder=None):
        _, predicted = super().forward(tokens, features, positions, kv_cache, logits_at, decoder)
        rows = predicted if logits_at is None else predicted[:, logits_at]
        return self.lm_head(rows), predicted
