"""Negative control: training computes the unrolled losses but backpropagates only the first step's (teacher forcing), so unroll changes nothing."""
# targets: eagle3_head::test_training_unrolls_and_leaves_the_target_alone


def train_eagle3_head(target, windows, steps, seed=0, batch=4, lr=3e-3, unroll=3, progress=False):  # negative control
    torch.manual_seed(seed)
    pick = torch.Generator().manual_seed(seed)
    head = Eagle3Head(target)
    states, argmax_tokens = target_features(target, windows, layers=head.feature_layers)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    head.losses = []
    for i in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (i + 1) / max(1, steps // 20)) * 0.5 * (1 + math.cos(math.pi * i / steps))
        chosen = torch.randint(0, len(windows), (batch,), generator=pick)
        per_step = unrolled_losses(head, windows[chosen], states[chosen], argmax_tokens[chosen], unroll)
        opt.zero_grad(set_to_none=True)
        per_step[0].backward()  # BUG: the unrolled steps never reach the gradient
        opt.step()
        head.losses.append(float(torch.stack(per_step).mean()))
    return head
