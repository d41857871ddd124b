"""The course engine reproduces `transformers`: logits to 1e-4, greedy tokens exactly."""

from __future__ import annotations

import pytest
import torch

from llmopt.engine import Engine, KVView, causal_attention

PROMPTS = [
    "import os\n",
    "def __init__(self, name, value=None):\n        self.",
    "class Queue:\n    \"\"\"A FIFO queue.\"\"\"\n\n    def put(self, item",
    "    for index, line in enumerate(lines):\n        if",
    "try:\n    import _thread\nexcept ImportError:\n",
]
MODELS = ("course-lm", "course-lm-draft")


def positions_of(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.cumsum(-1) - 1).masked_fill(attention_mask == 0, -1)


@pytest.mark.parametrize("name", MODELS)
def test_logits_match_transformers(course_models, tokenizer, name):
    model = course_models[name]
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)  # left-padded
    with torch.no_grad():
        expected = model(**batch).logits  # (B, T, V)
    got = Engine.from_model(model).forward(batch.input_ids, positions_of(batch.attention_mask))
    real = batch.attention_mask.bool()  # padding positions produce nothing anyone reads
    assert got.dtype == torch.float32
    torch.testing.assert_close(got[real], expected[real], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_tokens_match_generate_batch_1(course_models, tokenizer, name, prompt):
    model = course_models[name]
    batch = tokenizer(prompt, return_tensors="pt")
    expected = model.generate(**batch, do_sample=False, max_new_tokens=24)
    got = Engine.from_model(model).generate(batch.input_ids, batch.attention_mask, 24)
    assert got.tolist() == expected.tolist()


@pytest.mark.parametrize("name", MODELS)
def test_greedy_tokens_match_generate_left_padded_batch(course_models, tokenizer, name):
    model = course_models[name]
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    expected = model.generate(**batch, do_sample=False, max_new_tokens=24)
    got = Engine.from_model(model).generate(batch.input_ids, batch.attention_mask, 24)
    assert got.tolist() == expected.tolist()


def test_sequences_that_end_are_padded_and_decoding_stops(course_models, tokenizer):
    """Make a token the model is sure to emit early act as EOS, in one row only."""
    model = course_models["course-lm"]
    batch = tokenizer(PROMPTS[:3], return_tensors="pt", padding=True)
    free_run = model.generate(**batch, do_sample=False, max_new_tokens=8)
    stop_token = int(free_run[0, batch.input_ids.shape[1] + 2])  # row 0's third new token
    expected = model.generate(**batch, do_sample=False, max_new_tokens=8,
                              eos_token_id=stop_token, pad_token_id=tokenizer.pad_token_id)
    engine = Engine(Engine.from_model(model).weights, eos_token_id=stop_token,
                    pad_token_id=tokenizer.pad_token_id)
    got = engine.generate(batch.input_ids, batch.attention_mask, 8)
    assert got.tolist() == expected.tolist()
    assert (got[0, batch.input_ids.shape[1] + 3:] == tokenizer.pad_token_id).all()


class AppendOnlyCache:
    """The simplest `KVCache`: concatenate each step's keys and values (test double)."""

    def __init__(self):
        self.layers: dict[int, KVView] = {}

    def update(self, layer, keys, values, positions):
        if layer in self.layers:
            past = self.layers[layer]
            keys = torch.cat([past.keys, keys], dim=2)
            values = torch.cat([past.values, values], dim=2)
            positions = torch.cat([past.positions, positions], dim=1)
        self.layers[layer] = KVView(keys, values, positions)
        return self.layers[layer]


def test_a_plugged_in_cache_gives_the_same_tokens(course_models, tokenizer):
    model = course_models["course-lm"]
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    engine = Engine.from_model(model)
    without_cache = engine.generate(batch.input_ids, batch.attention_mask, 16)
    with_cache = engine.generate(batch.input_ids, batch.attention_mask, 16,
                                 kv_cache=AppendOnlyCache())
    assert with_cache.tolist() == without_cache.tolist()


def test_a_plugged_in_attention_is_the_one_called(course_models, tokenizer):
    calls = []

    def sdpa_attention(query, keys, values, query_positions, key_positions):
        calls.append(query.shape)
        visible = ((key_positions[:, None, :] >= 0)
                   & (key_positions[:, None, :] <= query_positions[:, :, None]))
        return torch.nn.functional.scaled_dot_product_attention(
            query, keys, values, attn_mask=visible[:, None], enable_gqa=True)

    model = course_models["course-lm"]
    batch = tokenizer(PROMPTS[:1], return_tensors="pt")
    positions = positions_of(batch.attention_mask)
    reference = Engine.from_model(model).forward(batch.input_ids, positions)
    plugged = Engine.from_model(model, attention=sdpa_attention).forward(batch.input_ids,
                                                                         positions)
    assert len(calls) == model.config.num_hidden_layers
    torch.testing.assert_close(plugged, reference, atol=1e-4, rtol=0)


def test_causal_attention_never_returns_nan_for_rows_that_see_nothing():
    query = torch.randn(1, 4, 3, 8)
    keys, values = torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8)
    positions = torch.tensor([[-1, 0, 1]])  # the first slot is padding
    out = causal_attention(query, keys, values, positions, positions)
    assert torch.isfinite(out).all()


def test_engine_shares_the_model_weights(course_models):
    model = course_models["course-lm"]
    weights = Engine.from_model(model).weights
    assert weights.embed_tokens.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert weights.lm_head.data_ptr() == weights.embed_tokens.data_ptr()  # tied


# ---------------------------------------------------------------------------------------
# The CUDA-graph decode path (its static cache is checked on the CPU, the graph on a GPU)
# ---------------------------------------------------------------------------------------

def test_static_cache_decodes_like_transformers_on_cpu(course_models, tokenizer):
    from llmopt.engine import CudaGraphDecoder
    from tools.static_kv_cache import StaticKVCache

    model = course_models["course-lm"]
    batch = tokenizer(PROMPTS[:3], return_tensors="pt", padding=True)
    expected = model.generate(**batch, do_sample=False, max_new_tokens=12)
    engine = Engine.from_model(model)
    decoder = CudaGraphDecoder(engine, StaticKVCache(engine.weights, 3, 64), capture=False)
    got = decoder.generate(batch.input_ids, batch.attention_mask, 12, graph=False)
    assert got.tolist() == expected.tolist()


def test_cuda_graph_decoder_refuses_a_cpu_engine_and_says_why(course_models):
    from llmopt.engine import CudaGraphDecoder
    from tools.static_kv_cache import StaticKVCache

    with pytest.raises(RuntimeError, match="CUDA device"):
        engine = Engine.from_model(course_models["course-lm"])
        CudaGraphDecoder(engine, StaticKVCache(engine.weights, 1, 16))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_decode_is_token_equal_to_eager_decode(tokenizer):
    from llmopt.engine import CudaGraphDecoder
    from tools.static_kv_cache import StaticKVCache
    from llmopt.models import load_model

    model = load_model("course-lm", device="cuda")
    batch = tokenizer(PROMPTS[:4], return_tensors="pt", padding=True).to("cuda")
    engine = Engine.from_model(model)
    decoder = CudaGraphDecoder(engine, StaticKVCache(engine.weights, 4, 128))
    graph = decoder.generate(batch.input_ids, batch.attention_mask, 32, graph=True)
    eager = decoder.generate(batch.input_ids, batch.attention_mask, 32, graph=False)
    assert graph.tolist() == eager.tolist()
    expected = model.generate(**batch, do_sample=False, max_new_tokens=32)
    assert graph.tolist() == expected.tolist()


def test_logits_at_gives_the_same_rows(course_models, tokenizer):
    model = course_models["course-lm"]
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    engine, positions = Engine.from_model(model), positions_of(batch.attention_mask)
    every = engine.forward(batch.input_ids, positions)  # (B, T, V)
    rows = torch.tensor([0, 3, -1])
    some = engine.forward(batch.input_ids, positions, logits_at=rows)  # (B, 3, V)
    assert some.shape == (len(PROMPTS), 3, every.shape[-1])
    torch.testing.assert_close(some, every[:, rows], atol=1e-5, rtol=0)


def test_silent_layers_keep_the_logits_and_multiply_the_work():
    """with_silent_layers(extra): each layer followed by `extra` copies that add exactly zero."""
    from llmopt.engine import LlamaWeights

    weights = LlamaWeights.from_checkpoint("course-lm")
    deep = weights.with_silent_layers(3)
    assert len(deep.layers) == 4 * len(weights.layers)
    assert deep.layers[0] is weights.layers[0] and float(deep.layers[1].o_t.abs().max()) == 0.0
    ids = torch.randint(3, 4096, (2, 17), generator=torch.Generator().manual_seed(8))
    positions = torch.arange(17).expand(2, 17)
    assert torch.equal(Engine(deep).forward(ids, positions), Engine(weights).forward(ids, positions))
    with pytest.raises(ValueError):
        weights.with_silent_layers(-1)


def test_hidden_states_and_input_embeddings_are_the_eagle_seams():
    """hidden_at returns the residual stream that transformers reports (before the final norm
    for -1), inputs_embeds replaces the embedding lookup, and with_layers keeps the ends."""
    from llmopt.models import load_model

    model = load_model("course-lm")
    engine = Engine.from_model(model)
    ids = torch.randint(3, 4096, (2, 11), generator=torch.Generator().manual_seed(9))
    positions = torch.arange(11).expand(2, 11)
    plain = engine.forward(ids, positions)
    logits, (first, last) = engine.forward(ids, positions, hidden_at=(0, -1))
    assert torch.equal(logits, plain)
    with torch.no_grad():
        states = model(ids, output_hidden_states=True).hidden_states  # embeddings, then each layer (last one normed)
    torch.testing.assert_close(first, states[1], atol=1e-4, rtol=1e-4)
    normed = torch.nn.functional.rms_norm(last, (last.shape[-1],), engine.weights.final_norm,
                                          engine.weights.rms_norm_eps)
    torch.testing.assert_close(normed, states[-1], atol=1e-4, rtol=1e-4)
    rows, (hidden,) = engine.forward(ids, positions, logits_at=torch.tensor([10]), hidden_at=(-1,))
    assert rows.shape == (2, 1, plain.shape[-1]) and hidden.shape == last.shape
    embeds = engine.weights.embed_tokens[ids]
    assert torch.equal(engine.forward(None, positions, inputs_embeds=embeds), plain)
    one = Engine(engine.weights.with_layers(engine.weights.layers[:1]))
    assert one.weights.lm_head_t is engine.weights.lm_head_t and len(one.weights.layers) == 1
    torch.testing.assert_close(one.forward(ids, positions, hidden_at=(-1,))[1][0], first, atol=1e-5, rtol=0)
