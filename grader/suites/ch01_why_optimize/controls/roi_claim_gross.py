"""Negative control: "100x ROI" taken as savings of 100x the cost (the cost not netted out)."""
# targets: q_roi_claim
ANSWER_MIN_MONTHLY_BILL_USD = 100 * 50_000 / 12
ANSWER_SPEEDUP_NEEDED = 1 / (1 - ANSWER_MIN_MONTHLY_BILL_USD / 600_000)
