"""Negative control: TPOT computed per chunk (chunks taken for tokens), output_tokens ignored."""
# targets: stream_metrics
import json


def stream_metrics(sent_s, events, output_tokens):
    if output_tokens < 1:
        raise ValueError("output_tokens")
    pieces, arrivals = [], []
    for arrival, line in events:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            break
        choice = json.loads(payload)["choices"][0]
        text = choice["text"] if "text" in choice else (choice.get("delta") or {}).get("content")
        if text:
            pieces.append(text)
            arrivals.append(arrival)
    if not arrivals:
        raise ValueError("no text")
    chunks = len(arrivals)
    return {"text": "".join(pieces), "ttft_s": arrivals[0] - sent_s, "e2e_s": arrivals[-1] - sent_s,
            "tpot_s": (arrivals[-1] - arrivals[0]) / (chunks - 1) if chunks > 1 else 0.0}
