"""Negative control: the toolkit installed in the image as the fix; the mean taken for the typical call."""
# targets: q_driver, q_timing


def question_1():
    return {"status": "B", "fix": "A", "branch": 550}


def question_2():
    return {"no_sync_ms": 4.02, "mean_ms": 12.02, "median_ms": 12.02}
