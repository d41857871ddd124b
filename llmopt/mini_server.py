"""A minimal OpenAI-style completions endpoint on the course engine, on loopback only:
something for chapter 4's benchmark client to measure. Standard library only.

    server = start(engine, tokenizer)                 # a daemon thread on 127.0.0.1
    events = stream_completion(server.url, "def main(", max_tokens=16)
    server.shutdown()

`POST /v1/completions` with `{"prompt": str, "max_tokens": int, "stream": true}` answers
as a server-sent-event stream in the shape OpenAI-compatible servers (vLLM's included)
use: one `data: {json}` line per generated token, each chunk's text in
`choices[0].text`, then `data: [DONE]`. Like many servers it first sends an SSE comment
(`: ok`) and a chunk with no text, so a client that starts the TTFT clock at the first
byte or the first chunk measures the wrong thing.

It is not a production server (chapter 9 builds that: batching, metrics, timeouts,
cancellation): one request decodes at a time, greedily, recomputing the prefix at every
step (the engine without a cache), and it refuses any address but 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

MAX_TOKENS_LIMIT = 256  # a request may not ask for more: the server stays bounded
LOOPBACK = "127.0.0.1"


def _decode_stream(engine, tokenizer, prompt: str, max_tokens: int):
    """Yield the text of each greedy token (no KV cache: each step reruns the prefix)."""
    import torch

    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]  # (1, T)
    prompt_len, emitted = ids.shape[1], ""
    with torch.inference_mode():
        for _ in range(max_tokens):
            positions = torch.arange(ids.shape[1])[None]  # (1, T)
            next_id = engine.forward(ids, positions)[0, -1].argmax().view(1, 1)  # (1, 1)
            ids = torch.cat([ids, next_id], dim=1)
            text = tokenizer.decode(ids[0, prompt_len:])  # whole text so far: pieces join up
            yield text[len(emitted):]
            emitted = text


class _Handler(BaseHTTPRequestHandler):
    server_version = "llmopt-mini/1"

    def log_message(self, format, *args):  # quiet: the notebook prints its own lines
        pass

    def do_POST(self):
        if self.path != "/v1/completions":
            self.send_error(404, "only POST /v1/completions")
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            prompt, max_tokens = str(body["prompt"]), int(body.get("max_tokens", 16))
            if not 1 <= max_tokens <= MAX_TOKENS_LIMIT:
                raise ValueError(f"max_tokens must be in 1..{MAX_TOKENS_LIMIT}")
        except (ValueError, KeyError, TypeError) as exc:
            self.send_error(400, str(exc))
            return
        engine, tokenizer = self.server.engine, self.server.tokenizer
        with self.server.lock:  # one decode at a time: the engine is not batched here
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self._send(": ok\n\n")
            self._send_chunk("", None)
            for piece in _decode_stream(engine, tokenizer, prompt, max_tokens):
                self._send_chunk(piece, None)
            self._send_chunk("", "length")
            self._send("data: [DONE]\n\n")

    def _send_chunk(self, text: str, finish_reason):
        chunk = {"object": "text_completion", "model": "course-lm",
                 "choices": [{"index": 0, "text": text, "finish_reason": finish_reason}]}
        self._send(f"data: {json.dumps(chunk)}\n\n")

    def _send(self, text: str):
        self.wfile.write(text.encode())
        self.wfile.flush()


class MiniServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, engine, tokenizer, port: int = 0):
        super().__init__((LOOPBACK, port), _Handler)
        self.engine, self.tokenizer, self.lock = engine, tokenizer, threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}"


def start(engine, tokenizer, port: int = 0) -> MiniServer:
    """Serve on 127.0.0.1 (port 0: any free port) from a daemon thread; `shutdown()` stops it."""
    server = MiniServer(engine, tokenizer, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stream_completion(url: str, prompt: str, max_tokens: int = 16,
                      timeout_s: float = 60.0) -> tuple[float, list[tuple[float, str]]]:
    """Send one streaming completion request; return (the time it was sent, [(arrival time,
    line), ...] for every line of the response), all on `time.perf_counter`'s clock.
    Loopback only; nothing is parsed here: that is the benchmark client's job."""
    parts = urlsplit(url)
    if parts.hostname not in (LOOPBACK, "localhost"):
        raise ValueError(f"the course's benchmark client talks to loopback only, not {parts.hostname}")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "stream": True})
    try:
        sent = time.perf_counter()
        connection.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {response.read()[:200]!r}")
        events = []
        while True:
            line = response.readline()
            if not line:
                break
            events.append((time.perf_counter(), line.decode().rstrip("\r\n")))
        return sent, events
    finally:
        connection.close()
