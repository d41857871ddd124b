"""Negative control: fits a as accepted drafts over drafted ones, as if every cycle ended in a rejection."""
# targets: cost_model


def fit_acceptance(accepted, gamma):  # negative control
    return sum(accepted) / (len(accepted) * gamma)
