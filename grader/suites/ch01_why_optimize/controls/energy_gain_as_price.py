"""Negative control: the energy gain taken for the cost fall, the whole cost assumed energy."""
# targets: q_energy_share
ANSWER_COST_FALL_FACTOR = 50_000.0
ANSWER_ENERGY_SHARE_FOR_10X = 0.1
