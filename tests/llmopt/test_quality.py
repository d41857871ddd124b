"""The linear seam (`LlamaWeights.map_linears`) and held-out quality (`llmopt.quality`)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from llmopt.corpus import build_corpus
from llmopt.engine import Engine
from llmopt.quality import calibration_tokens, heldout_tokens, kl_divergence, perplexity


@pytest.fixture(scope="module")
def engine(course_models):
    return Engine.from_model(course_models["course-lm"])


def with_weights(engine: Engine, weights) -> Engine:
    return Engine(weights, engine.attention, engine.eos_token_id, engine.pad_token_id)


def test_identity_map_is_bit_identical(engine):
    tokens = heldout_tokens(256).view(2, 128)
    positions = torch.arange(128).expand(2, 128)
    mapped = with_weights(engine, engine.weights.map_linears(lambda name, weight: weight))
    assert torch.equal(mapped.forward(tokens, positions), engine.forward(tokens, positions))
    prompt = tokens[:1, :16]
    assert torch.equal(mapped.generate(prompt, max_new_tokens=8),
                       engine.generate(prompt, max_new_tokens=8))


def test_callables_stand_in_for_weights(engine):
    seen = {}

    def as_callable(name, weight):
        seen[name] = tuple(weight.shape)
        return lambda x: x @ weight.T  # what a quantized layer computes, in full precision

    mapped = with_weights(engine, engine.weights.map_linears(as_callable))
    w = engine.weights
    D, hd = w.embed_tokens.shape[1], w.head_dim
    intermediate = w.layers[0].gate_proj.shape[0]
    assert seen["layers.0.qkv"] == ((w.n_heads + 2 * w.n_kv_heads) * hd, D)
    assert seen["layers.0.o"] == (D, w.n_heads * hd)
    assert seen["layers.0.gate_up"] == (2 * intermediate, D)
    assert seen[f"layers.{len(w.layers) - 1}.down"] == (D, intermediate)
    assert len(seen) == 4 * len(w.layers)
    tokens = heldout_tokens(128)[None]
    positions = torch.arange(128)[None]
    torch.testing.assert_close(mapped.forward(tokens, positions),
                               engine.forward(tokens, positions), atol=1e-4, rtol=0)


def test_map_linears_leaves_the_original_alone(engine):
    before = engine.weights.layers[0].qkv_t.clone()

    def scribble(name, weight):
        weight.zero_()  # a careless fn writes into what it was given
        return weight

    zeroed = engine.weights.map_linears(scribble)
    assert torch.equal(engine.weights.layers[0].qkv_t, before)
    assert not zeroed.layers[0].qkv_t.any()
    with pytest.raises(ValueError, match="shape"):
        engine.weights.map_linears(lambda name, weight: weight[:, :-1])
    with pytest.raises(TypeError, match="already mapped"):
        with_weights(engine, engine.weights.map_linears(
            lambda name, weight: lambda x: x @ weight.T)).weights.map_linears(lambda n, w: w)


def test_splits_are_disjoint_and_deterministic():
    corpus = build_corpus()
    assert not set(corpus.train_files) & set(corpus.heldout_files)
    assert torch.equal(heldout_tokens(1000), heldout_tokens()[:1000])
    calibration = calibration_tokens(1000, window=128)
    assert calibration.shape == (8, 128) and calibration.dtype == torch.long
    assert torch.equal(calibration, calibration_tokens(1000, window=128))


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(engine):
    w = engine.weights
    uniform = with_weights(engine, dataclasses.replace(w, lm_head=torch.zeros_like(w.lm_head)))
    vocab = w.lm_head.shape[0]
    assert math.isclose(perplexity(uniform, heldout_tokens(300), window=100), vocab, rel_tol=1e-5)
    real = perplexity(engine, heldout_tokens(1024))
    assert 1 < real < vocab / 10  # the trained model is far better than uniform


def test_kl_divergence_is_zero_only_for_identical_outputs(engine):
    tokens = heldout_tokens(256)
    assert kl_divergence(engine, engine, tokens, window=128) == 0.0
    noisy = with_weights(engine, engine.weights.map_linears(
        lambda name, weight: weight + 1e-3 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))))
    assert kl_divergence(noisy, engine, tokens, window=128) > 0
