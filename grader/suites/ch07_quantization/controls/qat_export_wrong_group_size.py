"""Negative control: QAT trains with 1x32 groups but exports with groups of 128."""
# targets: qat::test_export_matches_fake_quant


def export_qat(engine, group_size=32):  # negative control
    def export(name, weight):
        groups = weight.reshape(weight.shape[0], -1, 128)  # BUG: the deployment default, not the trained size
        scales = fp16_scales(groups.abs().amax(-1))
        return Int4Linear.from_codes(*int4_codes(weight, scales, 128), 128)

    return with_weights(engine, engine.weights.map_linears(export))
