"""Negative control: one decode GPU per prefill GPU assumed best for one model, and the other model's ratio reversed."""
# targets: thinking


def question_1():
    return "1P1D"


def question_2():
    return "2P1D"
