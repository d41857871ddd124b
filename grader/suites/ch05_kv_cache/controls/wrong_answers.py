"""Negative control: the questions answered with the usual mistakes: "paging adds no
memory", MLA counted as a K and a V, and every cached token counted, partial block
included."""
# targets: questions


def q1_paging_capacity_gain():  # negative control
    return 1.0  # BUG: "paging does not add memory"


def q2_mla_saving():  # negative control
    return (2 * 61 * 8 * 128 * 2) / (2 * 61 * (512 + 64) * 2)  # BUG: MLA counted as a K and a V


def q3_prefill_saved_fraction():  # negative control
    return 1500 / 2000  # BUG: the partial block is not shared
