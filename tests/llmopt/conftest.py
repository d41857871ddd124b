"""Shared fixtures: each course model is loaded once per test session."""

from __future__ import annotations

import pytest
import torch

from llmopt.models import load_model, load_tokenizer

COURSE_MODELS = ("course-lm", "course-lm-draft")


@pytest.fixture(scope="session", autouse=True)
def _two_threads():
    torch.set_num_threads(2)  # the course machine; and results must not depend on it


@pytest.fixture(scope="session")
def course_models():
    return {name: load_model(name) for name in COURSE_MODELS}


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer("course-lm")
