"""Negative control: the 50,000x read as a price decline, its rate divided linearly."""
# targets: q_headline
ANSWER_HEADLINE_MEASURES = "A"
ANSWER_HEADLINE_FACTOR = 50_000
ANSWER_HEADLINE_ANNUAL_FACTOR = 50_000 / 8
