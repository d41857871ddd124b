"""The near-tie allowance of chapter 6's real-engine check: explicit, reported, never silent."""

import pytest

from llmopt.serving import NEAR_TIE, near_tie_flips

ALONE = [([5, 6, 7, 8], [0.9, 0.5, NEAR_TIE / 10, 0.3]), ([1, 2], [0.2, 0.2])]


def test_identical_tokens_have_no_flips():
    assert near_tie_flips({"tokens": {0: [5, 6, 7, 8], 1: [1, 2]}}, ALONE) == []


def test_a_flip_at_a_near_tie_is_allowed_and_reported():
    served = {"tokens": {"0": [5, 6, 9, 4], "1": [1, 2]}}  # keys as they come back from JSON
    assert near_tie_flips(served, ALONE) == [(0, 2, NEAR_TIE / 10)]


def test_a_flip_where_the_logits_were_far_apart_fails():
    with pytest.raises(AssertionError, match="request 0 differs .* at token 1"):
        near_tie_flips({"tokens": {0: [5, 3, 7, 8], 1: [1, 2]}}, ALONE)


def test_a_missing_token_fails():
    with pytest.raises(AssertionError, match="request 1 generated 1 tokens, expected 2"):
        near_tie_flips({"tokens": {0: [5, 6, 7, 8], 1: [1]}}, ALONE)
