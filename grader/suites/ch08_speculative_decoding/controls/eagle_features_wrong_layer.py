"""Negative control: the head's features come from the second-to-last layer, not the last."""
# targets: eagle_head


def target_features(target, windows, chunk=16):  # negative control
    n, width = windows.shape
    features, greedy = [], []
    with torch.no_grad():
        for start in range(0, n, chunk):
            part = windows[start:start + chunk]
            positions = torch.arange(width)[None].expand(len(part), width)
            logits, (hidden,) = target.forward(part, positions, hidden_at=(-2,))  # BUG: one layer early
            features.append(hidden)
            greedy.append(logits.argmax(dim=-1))
    return torch.cat(features), torch.cat(greedy)
