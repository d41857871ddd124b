"""Loading the course models (or any Hugging Face causal LM) without touching the network.

Names resolve through `course_config.MODELS` ("course-lm" -> models/course-lm); anything
else is taken as a directory or a hub id. The hub is never contacted: a hub id loads
only if it is already in the local Hugging Face cache. The course never downloads.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

import course_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it: belt and braces
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel  # noqa: E402
from transformers import PreTrainedTokenizerBase  # noqa: E402

DEFAULT_MODEL = "course-lm"
TRAINED_BY_THE_COURSE = ("course-lm", "course-lm-draft")  # what models/train.py builds
REBUILD_HINT = "Rebuild the course models with `make models` (runs models/train.py, offline)."


class ModelNotFoundError(OSError):
    """A model directory is missing or unreadable; the message says how to get it back."""


def model_path(name: str = DEFAULT_MODEL) -> str:
    """The directory or hub id that `name` stands for (see `course_config.MODELS`)."""
    return str(course_config.MODELS.get(name, name))


def _is_local(location: str) -> bool:
    """A directory rather than a hub id ("org/model")."""
    path = Path(location).expanduser()
    return path.is_absolute() or location.startswith((".", "~")) or path.exists()


def _hint(location: str) -> str:
    """How to get the model back: retrain it if the course builds it, else download it."""
    path = Path(location).expanduser().resolve()
    if (path.name in TRAINED_BY_THE_COURSE
            or path.is_relative_to(Path(course_config.MODELS_DIR).resolve())):
        return REBUILD_HINT
    return ("Download it on a machine that reaches the hub (`huggingface-cli download ...`) "
            "or point `course_config.MODELS` at a local copy; the course never downloads.")


def _check_directory(name: str, location: str) -> None:
    """Fail early, with the hint, on a directory that cannot hold a model."""
    if _is_local(location) and not (Path(location).expanduser() / "config.json").is_file():
        raise ModelNotFoundError(
            f"model {name!r}: no Hugging Face model at {location} (config.json missing). "
            f"{_hint(location)}")


def load_model(name: str = DEFAULT_MODEL, *, dtype: torch.dtype = torch.float32,
               device: str | torch.device = "cpu") -> PreTrainedModel:
    """A causal LM in eval mode, loaded with `AutoModelForCausalLM` from local files only.

    Every weight must come from the checkpoint: a tensor that is missing or of the wrong
    shape would otherwise be silently initialised at random, which is worse than failing.
    """
    location = model_path(name)
    _check_directory(name, location)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            location, dtype=dtype, local_files_only=True, output_loading_info=True)
    except Exception as err:  # truncated safetensors, bad JSON, missing files, ...
        raise ModelNotFoundError(
            f"model {name!r} at {location} could not be loaded ({type(err).__name__}: "
            f"{err}). {_hint(location)}") from err
    incomplete = {kind: keys for kind, keys in info.items()
                  if kind in ("missing_keys", "mismatched_keys") and keys}
    if incomplete:
        raise ModelNotFoundError(
            f"model {name!r} at {location} is incomplete: {incomplete}. {_hint(location)}")
    return model.to(device).eval()


def load_tokenizer(name: str = DEFAULT_MODEL) -> PreTrainedTokenizerBase:
    """The model's tokenizer (`AutoTokenizer`, local files only); pads on the left."""
    location = model_path(name)
    _check_directory(name, location)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=True)
    except Exception as err:
        raise ModelNotFoundError(
            f"tokenizer of {name!r} at {location} could not be loaded ({type(err).__name__}: "
            f"{err}). {_hint(location)}") from err
    tokenizer.padding_side = "left"  # decoder-only batches: every prompt ends at the last column
    if tokenizer.pad_token is None:  # hub models often have none; reuse EOS as HF does
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
