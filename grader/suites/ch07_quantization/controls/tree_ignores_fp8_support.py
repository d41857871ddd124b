"""Negative control: the decision tree answers FP8 whatever the hardware (an A100 has no FP8
tensor cores: INT8 there)."""
# targets: decision_tree


def choose_method(scenario):  # negative control
    if scenario["fits_at_8bit"] and scenario["batch_size"] >= 32:
        return "fp8"  # BUG: ignores fp8_tensor_cores
    budget = scenario["accuracy_budget"]
    if budget >= 0.05:
        return "int4_rtn"
    if budget >= 0.01:
        return "int4_awq"
    if scenario["can_finetune"]:
        return "int4_qat"
    return "fp8" if scenario["fits_at_8bit"] else "int4_awq"  # BUG: same
