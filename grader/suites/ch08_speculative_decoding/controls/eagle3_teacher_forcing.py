"""Negative control: every unrolled step reads the target's true fused features (teacher forcing), never the head's own predictions."""
# targets: eagle3_head::test_unrolled_losses_feed_the_heads_own_predictions


def unrolled_losses(head, tokens, hidden, greedy, unroll):  # negative control
    batch, width = tokens.shape
    decoder, cache, result = head.decoder(), UnrolledCache(), []
    true_features = head.fuse(hidden)  # (B, W, D)
    for s in range(1, unroll + 1):
        where = torch.arange(s - 1, width - 1)[None].expand(batch, width - s)
        step_logits, _ = head(tokens[:, s:], true_features[:, s - 1:-1], where, cache, None, decoder,
                              UnrolledVisibility(width - 1, s))  # BUG: the true feature of t + s - 1
        result.append(F.cross_entropy(step_logits.flatten(0, 1), greedy[:, s:].flatten()))
    return result
