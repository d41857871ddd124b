"""Negative control: TTFT taken at the first data: event, although that chunk carries no text."""
# targets: stream_metrics
import json


def stream_metrics(sent_s, events, output_tokens):
    if output_tokens < 1:
        raise ValueError("output_tokens")
    pieces, arrivals, first_event = [], [], None
    for arrival, line in events:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            break
        first_event = arrival if first_event is None else first_event
        choice = json.loads(payload)["choices"][0]
        text = choice["text"] if "text" in choice else (choice.get("delta") or {}).get("content")
        if text:
            pieces.append(text)
            arrivals.append(arrival)
    if not arrivals:
        raise ValueError("no text")
    return {"text": "".join(pieces), "ttft_s": first_event - sent_s, "e2e_s": arrivals[-1] - sent_s,
            "tpot_s": (arrivals[-1] - arrivals[0]) / (output_tokens - 1) if output_tokens > 1 else 0.0}
