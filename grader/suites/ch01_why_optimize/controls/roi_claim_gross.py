"""Negative control: "100x ROI" taken as savings of 100x the cost (the cost not netted out)."""
# targets: q_roi_claim


def question_3():
    bill = 100 * 50_000 / 12
    return {"min_monthly_bill_usd": bill, "speedup_needed": 1 / (1 - bill / 600_000)}
