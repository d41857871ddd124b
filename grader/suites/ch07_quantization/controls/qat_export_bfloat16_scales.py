"""Negative control: QAT's export rounds its scales to bfloat16, not the float16 the fake quantizer trained with."""
# targets: qat::test_export_matches_fake_quant


def export_qat(engine, group_size=32):  # negative control
    def export(name, weight):
        groups = weight.reshape(weight.shape[0], -1, group_size)
        absmax = groups.abs().amax(-1)
        scales = torch.where(absmax > 0, absmax / 7, torch.ones_like(absmax)).bfloat16().float()  # BUG
        return Int4Linear.from_codes(*int4_codes(weight, scales, group_size), group_size)

    return with_weights(engine, engine.weights.map_linears(export))
