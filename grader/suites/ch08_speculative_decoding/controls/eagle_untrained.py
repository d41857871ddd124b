"""Negative control: the training loop computes the loss but never steps the optimizer."""
# targets: eagle_head::test_the_trained_head_drafts_as_well_as_the_references


def train_eagle_head(target, windows, steps, seed=0, batch=4, lr=3e-3, progress=False):  # negative control
    torch.manual_seed(seed)
    draw = torch.Generator().manual_seed(seed)
    head = EagleHead(target)
    features, greedy = target_features(target, windows)
    n, width = windows.shape
    positions = torch.arange(width - 1)[None].expand(batch, width - 1)
    head.losses = []
    for step in range(steps):
        rows = torch.randint(0, n, (batch,), generator=draw)
        x, f, g = windows[rows], features[rows], greedy[rows]
        logits, predicted = head(x[:, 1:], f[:, :-1], positions)
        loss = (F.cross_entropy(logits.flatten(0, 1), g[:, 1:].flatten())
                + 0.1 * F.smooth_l1_loss(predicted, f[:, 1:]))
        head.losses.append(loss.item())  # BUG: no backward, no optimizer step
    return head
