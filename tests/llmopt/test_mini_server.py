"""llmopt.mini_server: the loopback completions endpoint streams the engine's greedy tokens."""

import json

import pytest

from llmopt import mini_server
from llmopt.engine import Engine


@pytest.fixture(scope="module")
def served(course_models, tokenizer):
    engine = Engine.from_model(course_models["course-lm"])
    server = mini_server.start(engine, tokenizer)
    yield server, engine, tokenizer
    server.shutdown()


def test_stream_carries_the_engines_greedy_tokens(served):
    server, engine, tokenizer = served
    prompt = "def main(argv):\n    "
    sent, events = mini_server.stream_completion(server.url, prompt, max_tokens=6)
    lines = [line for _, line in events]
    assert lines[0] == ": ok" and lines[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(line[6:])["choices"][0] for line in lines if line.startswith("data: {")]
    assert chunks[0]["text"] == "" and chunks[-1]["finish_reason"] == "length"
    assert len([c for c in chunks[1:-1]]) == 6  # one chunk per token
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    engine.eos_token_id = None
    want = tokenizer.decode(engine.generate(ids, max_new_tokens=6)[0, ids.shape[1]:])
    assert "".join(c["text"] for c in chunks) == want
    arrivals = [t for t, _ in events]
    assert sent <= arrivals[0] and arrivals == sorted(arrivals)


def test_bounded_and_loopback_only(served):
    server, _, _ = served
    with pytest.raises(RuntimeError, match="400"):
        mini_server.stream_completion(server.url, "x", max_tokens=mini_server.MAX_TOKENS_LIMIT + 1)
    with pytest.raises(ValueError, match="loopback"):
        mini_server.stream_completion("http://10.0.0.1:8000", "x")
    assert server.url.startswith("http://127.0.0.1:")
