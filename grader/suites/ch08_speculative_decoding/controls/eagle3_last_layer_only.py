"""Negative control: the EAGLE-3 head fuses the last layer three times, nothing from the low or middle layers."""
# targets: eagle3_head::test_the_head_fuses_low_middle_and_high_layers


class Eagle3Head(Eagle3Head):  # negative control
    def __init__(self, target):
        super().__init__(target)
        self.feature_layers = (-1, -1, -1)  # BUG: high, high, high
