"""Negative control: the fake quantizer's backward returns zero (round's true derivative), so QAT never learns."""
# targets: qat


class FakeQuantInt4(torch.autograd.Function):  # negative control
    @staticmethod
    def forward(ctx, weight, group_size):
        out_features, in_features = weight.shape
        groups = weight.reshape(out_features, in_features // group_size, group_size)
        scales = fp16_scales(groups.detach().abs().amax(-1).float()).to(weight.dtype)
        q = torch.round(groups / scales[..., None]).clamp(-7, 7)
        return (q * scales[..., None]).reshape(out_features, in_features)

    @staticmethod
    def backward(ctx, grad_output):
        return torch.zeros_like(grad_output), None  # BUG: blocks the gradient
