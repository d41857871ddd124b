"""Negative control: the questions answered with the usual mistakes: the capacity gain
taken as GPU memory over a sequence (no weights), MLA counted as a K and a V, and every
cached token counted, partial block included."""
# targets: questions
ANSWER_PAGING_CAPACITY_GAIN = 1.0  # BUG: "paging does not add memory"
ANSWER_MLA_SAVING = (2 * 61 * 8 * 128 * 2) / (2 * 61 * (512 + 64) * 2)  # BUG: MLA counted twice
ANSWER_PREFILL_SAVED_FRACTION = 1500 / 2000  # BUG: the partial block is not shared
