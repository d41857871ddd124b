"""Loading the course models offline, and failing helpfully when they are missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import course_config
from llmopt.models import ModelNotFoundError, load_model, load_tokenizer, model_path

REPO = Path(__file__).resolve().parents[2]


def test_names_resolve_through_course_config():
    assert model_path("course-lm") == str(course_config.MODELS["course-lm"])
    assert model_path("/some/dir") == "/some/dir"


def test_both_models_load_with_the_network_unreachable():
    """A fresh process with the hub switched off and every socket connect refused."""
    script = textwrap.dedent("""
        import socket
        def refuse(*args, **kwargs):
            raise OSError("network access during model loading")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        from llmopt.models import load_model, load_tokenizer
        for name in ("course-lm", "course-lm-draft"):
            model, tokenizer = load_model(name), load_tokenizer(name)
            assert model.config.model_type == "llama", model.config.model_type
            assert len(tokenizer) == model.config.vocab_size
        print("ok")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


def test_architecture_is_as_documented(course_models):
    target, draft = course_models["course-lm"].config, course_models["course-lm-draft"].config
    assert target.num_key_value_heads < target.num_attention_heads  # grouped-query attention
    assert target.max_position_embeddings >= 512
    assert target.hidden_act == "silu" and target.vocab_size == draft.vocab_size
    n_target = sum(p.numel() for p in course_models["course-lm"].parameters())
    n_draft = sum(p.numel() for p in course_models["course-lm-draft"].parameters())
    assert 4e6 <= n_target <= 6e6 and 0.7e6 <= n_draft <= 1.5e6


@pytest.mark.parametrize("name", ["course-lm", "course-lm-draft"])
def test_committed_model_directories_are_small(name):
    size = sum(f.stat().st_size for f in Path(model_path(name)).iterdir() if f.is_file())
    assert size < 25e6


def test_tokenizer_round_trips_source_code(tokenizer):
    text = Path(shutil.__file__).read_text()[:4000]
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.padding_side == "left"
    assert {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id} == {0, 1, 2}


def test_missing_directory_says_how_to_rebuild(tmp_path):
    with pytest.raises(ModelNotFoundError, match="make models"):
        load_model(str(tmp_path / "course-lm"))
    with pytest.raises(ModelNotFoundError, match="make models"):
        load_tokenizer(str(tmp_path / "course-lm"))


def test_missing_course_model_says_how_to_rebuild(tmp_path, monkeypatch):
    monkeypatch.setitem(course_config.MODELS, "course-lm", str(tmp_path / "course-lm"))
    with pytest.raises(ModelNotFoundError, match="make models"):
        load_model("course-lm")


def _copy_model(tmp_path: Path) -> Path:
    copy = tmp_path / "course-lm"
    shutil.copytree(model_path("course-lm"), copy)
    return copy


def test_truncated_weights_say_how_to_rebuild(tmp_path):
    copy = _copy_model(tmp_path)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelNotFoundError, match="make models"):
        load_model(str(copy))


def test_missing_weights_say_how_to_rebuild(tmp_path):
    copy = _copy_model(tmp_path)
    (copy / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="make models"):
        load_model(str(copy))


def test_corrupt_config_and_tokenizer_say_how_to_rebuild(tmp_path):
    copy = _copy_model(tmp_path)
    (copy / "config.json").write_text("{not json")
    (copy / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelNotFoundError, match="make models"):
        load_model(str(copy))
    with pytest.raises(ModelNotFoundError, match="make models"):
        load_tokenizer(str(copy))


def test_unknown_hub_id_is_not_downloaded():
    with pytest.raises(ModelNotFoundError, match="never downloads"):
        load_model("no-such-org/no-such-model")


@pytest.mark.parametrize("name", ["course-lm", "course-lm-draft"])
def test_engine_from_checkpoint_equals_engine_from_transformers(name):
    """Grading workers build the engine from the checkpoint folder: the same tensors, the
    same logits bit for bit and the same EOS/padding as from the transformers model, and
    transformers is never imported for it (it costs seconds of CPU per process)."""
    import torch

    from llmopt.engine import Engine

    direct, via_transformers = Engine.from_checkpoint(name), Engine.from_model(load_model(name))
    assert (direct.eos_token_id, direct.pad_token_id) == (via_transformers.eos_token_id, via_transformers.pad_token_id)
    ids = torch.randint(3, 4096, (2, 24), generator=torch.Generator().manual_seed(0))
    positions = torch.arange(24).expand(2, 24)
    assert torch.equal(direct.forward(ids, positions), via_transformers.forward(ids, positions))
    check = "import sys; from llmopt.engine import Engine; Engine.from_checkpoint(%r); " \
            "assert 'transformers' not in sys.modules, 'transformers was imported'" % name
    run = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
