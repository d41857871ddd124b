"""Exercise 5: TTFT, TPOT and text from recorded server-sent-event streams (completions and
chat shapes, comments, empty and multi-token chunks), no network."""
import json
import math
import random

import pytest

KEYS = {"text", "ttft_s", "e2e_s", "tpot_s"}


def completion(text, finish=None):
    return "data: " + json.dumps({"object": "text_completion",
                                  "choices": [{"index": 0, "text": text, "finish_reason": finish}]})


def chat(delta, finish=None):
    return "data: " + json.dumps({"object": "chat.completion.chunk",
                                  "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def _metrics(student, sent, events, tokens):
    got = student.stream_metrics(sent, events, tokens)
    assert isinstance(got, dict) and set(got) == KEYS, f"return a dict with the keys {sorted(KEYS)}; got {got!r:.200}"
    return got


def _stream(rng, sent, pieces, shape="completion", preamble=True):
    """Events for `pieces` (texts), arrivals after `sent`; returns (events, text arrivals)."""
    events, t, arrivals = [], sent + rng.uniform(0.001, 0.01), []
    if preamble:
        events += [(t, ": ok"), (t, ""), (t, completion("") if shape == "completion" else chat({"role": "assistant"})),
                   (t, "")]
    for piece in pieces:
        t += rng.uniform(0.005, 0.2)
        events += [(t, completion(piece) if shape == "completion" else chat({"content": piece})), (t, "")]
        arrivals.append(t)
    t += 0.001
    events += [(t, completion("", "length") if shape == "completion" else chat({}, "stop")), (t, ""),
               (t, "data: [DONE]"), (t, "")]
    return events, arrivals


@pytest.mark.points(1.5)
@pytest.mark.parametrize("shape", ["completion", "chat"])
def test_ttft_and_text_on_fresh_streams(student, shape):
    """TTFT stops at the first chunk with text, after comments and empty chunks; text joined in order"""
    rng = random.Random({"completion": 11, "chat": 12}[shape])
    for _ in range(8):
        sent = rng.uniform(0, 1e5)
        pieces = [rng.choice(["def", " main", "(", "):", "\n   ", " return", " x", " +", " 1"]) for _ in range(rng.randint(1, 12))]
        events, arrivals = _stream(rng, sent, pieces, shape)
        got = _metrics(student, sent, events, len(pieces))
        assert got["text"] == "".join(pieces), f"text {got['text']!r}, expected {''.join(pieces)!r}"
        assert math.isclose(got["ttft_s"], arrivals[0] - sent, rel_tol=1e-9, abs_tol=1e-9), (
            f"TTFT {got['ttft_s'] * 1e3:.3f} ms, expected {(arrivals[0] - sent) * 1e3:.3f} ms: the clock stops at the "
            "first chunk with text, not at a comment, an empty chunk or the role chunk")
        assert math.isclose(got["e2e_s"], arrivals[-1] - sent, rel_tol=1e-9, abs_tol=1e-9), (
            f"e2e {got['e2e_s'] * 1e3:.3f} ms, expected {(arrivals[-1] - sent) * 1e3:.3f} ms (the last chunk with text)")


@pytest.mark.points(1)
def test_tpot_counts_tokens_not_chunks(student):
    """TPOT divides the text span by output_tokens - 1, also when chunks hold several tokens"""
    rng = random.Random(7)
    for _ in range(10):
        sent = rng.uniform(0, 100)
        pieces = ["x" * rng.randint(1, 4) for _ in range(rng.randint(2, 9))]
        events, arrivals = _stream(rng, sent, pieces, preamble=rng.random() < 0.5)
        tokens = len(pieces) + rng.randint(0, 5)  # some chunks carried two tokens
        got = _metrics(student, sent, events, tokens)
        want = (arrivals[-1] - arrivals[0]) / (tokens - 1)
        assert math.isclose(got["tpot_s"], want, rel_tol=1e-9, abs_tol=1e-12), (
            f"{len(pieces)} chunks holding {tokens} tokens: TPOT {got['tpot_s'] * 1e3:.4f} ms, expected "
            f"{want * 1e3:.4f} ms = span between the first and last text / (output_tokens - 1)")


@pytest.mark.points(0.5)
def test_one_token_and_done_ends_the_answer(student):
    """one token: TPOT 0; anything after data: [DONE] is not the answer"""
    events = [(1.5, completion("hi")), (1.6, "data: [DONE]"), (1.7, completion(" late"))]
    got = _metrics(student, 1.0, events, 1)
    assert got["text"] == "hi" and got["tpot_s"] == 0.0 and math.isclose(got["ttft_s"], 0.5), (
        f"got {got}: one token has no gap (TPOT 0.0); [DONE] ends the stream")


@pytest.mark.points(0.5)
def test_other_sse_lines_are_skipped(student):
    """event: lines, comments and a null content are not text"""
    events = [(0.1, "event: message"), (0.1, chat({"role": "assistant", "content": None})), (0.2, ": keep-alive"),
              (0.3, "event: message"), (0.3, chat({"content": "ok"})), (0.4, chat({"content": "!"})),
              (0.5, "data: [DONE]")]
    got = _metrics(student, 0.0, events, 2)
    assert got["text"] == "ok!" and math.isclose(got["ttft_s"], 0.3) and math.isclose(got["tpot_s"], 0.1), (
        f"got {got}: only data: lines are events; a null content is empty")


@pytest.mark.points(0.5)
def test_rejects_streams_without_text(student):
    """no text at all, or output_tokens < 1, raises ValueError"""
    for events, tokens in (([(0.1, ": ok"), (0.2, completion("")), (0.3, "data: [DONE]")], 1),
                           ([(0.1, completion("a"))], 0)):
        with pytest.raises(ValueError):
            student.stream_metrics(0.0, events, tokens)
            raise AssertionError(f"stream_metrics returned for {events!r:.120}, output_tokens={tokens}")
