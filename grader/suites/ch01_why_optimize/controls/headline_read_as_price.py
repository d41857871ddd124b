"""Negative control: the 50,000x read as a price decline, its rate divided linearly."""
# targets: q_headline


def question_1():
    return {"measures": "A", "factor": 50_000, "annual_factor": 50_000 / 8}
