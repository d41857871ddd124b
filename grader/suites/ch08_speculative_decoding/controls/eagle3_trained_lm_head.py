"""Negative control: the EAGLE-3 head trains a copy of the target's LM head as a parameter of its own instead of reading through the frozen one."""
# targets: eagle3_head::test_the_head_fuses_low_middle_and_high_layers


class Eagle3Head(Eagle3Head):  # negative control
    def __init__(self, target):
        super().__init__(target)
        self.own_lm_head = torch.nn.Parameter(target.weights.lm_head_t.clone())  # BUG: trained, not frozen

    def forward(self, tokens, features, positions, kv_cache=None, logits_at=None, decoder=None, visibility=None):
        _, predicted = super().forward(tokens, features, positions, kv_cache, logits_at, decoder, visibility)
        rows = predicted if logits_at is None else predicted[:, logits_at]
        w = self.target_weights
        return F.rms_norm(rows, (rows.shape[-1],), w.final_norm, w.rms_norm_eps) @ self.own_lm_head, predicted
