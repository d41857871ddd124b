"""Negative control: the energy gain taken for the cost fall, the whole cost assumed energy."""
# targets: q_energy_share


def question_2():
    return {"cost_fall_factor": 50_000.0, "energy_share_for_10x": 0.1}
