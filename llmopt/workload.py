"""Workload traces: who arrives when, with how long a prompt, asking for how many tokens.

Every trace is a pure function of its seed, so a simulation over it is exactly
repeatable. Real traffic has two features that decide which scheduler wins, and both
are here:

- **arrivals** come as a Poisson process (independent users) or in bursts (a batch job,
  a retry storm, an agent fanning out), which is what fills queues;
- **lengths** are heavy-tailed: most prompts and answers are short, a few are very long
  (log-normal), which is what makes a static batch wait for its slowest member.

Multi-turn sessions resend the whole conversation each turn, so turn k's prompt is turn
k-1's prompt and answer plus a new user message: the shared prefix chapter 5 caches.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Request:
    request_id: int
    arrival_s: float  # when it reaches the server
    prompt_len: int  # tokens in the prompt (>= 1)
    output_len: int  # tokens it will generate (>= 1); known to the simulator, not the policy
    session_id: int = -1  # multi-turn: the conversation it belongs to (-1: none)
    prefix_len: int = 0  # tokens of the prompt shared with the session's previous turn
    block_hashes: tuple[int, ...] = ()  # real traces: ids of the prompt's blocks (equal id = equal prefix)
    hash_block_size: int = 0  # tokens per hashed block (Mooncake: 512); 0 when there are none

    def to_dict(self) -> dict:
        return asdict(self)


def as_requests(trace) -> list[Request]:
    """Requests from Request objects or their dicts (the form that crosses process walls)."""
    return [r if isinstance(r, Request) else
            Request(**{**r, "block_hashes": tuple(r.get("block_hashes", ()))}) for r in trace]


def at_rate(trace, rate_per_s: float) -> list[Request]:
    """The same requests, arrivals stretched or squeezed so that they come at `rate_per_s`
    on average (n requests over n / rate seconds); order, gaps' shape and lengths kept.
    This is how a goodput search replays one trace at many loads."""
    requests = as_requests(trace)
    if rate_per_s <= 0:
        raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
    first = min(r.arrival_s for r in requests)
    span = max(r.arrival_s for r in requests) - first
    if span <= 0:
        return requests
    scale = len(requests) / rate_per_s / span
    return [replace(r, arrival_s=round((r.arrival_s - first) * scale, 9)) for r in requests]


MOONCAKE_CONVERSATION = Path(__file__).resolve().parent.parent / "data" / "mooncake" / "conversation_trace.jsonl"


def load_mooncake(path=MOONCAKE_CONVERSATION, *, start: int = 0, limit: int | None = None) -> list[Request]:
    """Requests of a Mooncake trace [@qin2025-mooncake] (data/mooncake/, Apache 2.0): each
    line's `timestamp` (ms), `input_length`, `output_length` and `hash_ids` (ids of the
    prompt's 512-token blocks; equal ids mean an equal prefix up to that block).

    `start` and `limit` take a slice of consecutive lines; arrivals are shifted so that the
    slice starts at 0, and request ids count from 0 in file order."""
    rows = []
    with open(path) as f:
        for k, line in enumerate(f):
            if k < start:
                continue
            if limit is not None and len(rows) >= limit:
                break
            rows.append(json.loads(line))
    if not rows:
        raise ValueError(f"no requests in {path} from line {start}")
    t0 = rows[0]["timestamp"]
    return [Request(i, round((row["timestamp"] - t0) / 1000.0, 6), max(1, int(row["input_length"])),
                    max(1, int(row["output_length"])), block_hashes=tuple(row["hash_ids"]),
                    hash_block_size=512)
            for i, row in enumerate(rows)]


def lognormal_lengths(rng: random.Random, n: int, median: float, sigma: float,
                      low: int = 1, high: int = 1 << 20) -> list[int]:
    """n heavy-tailed lengths: log-normal with this median, clipped to [low, high]."""
    return [min(high, max(low, round(median * math.exp(sigma * rng.gauss(0.0, 1.0)))))
            for _ in range(n)]


def poisson_arrivals(rng: random.Random, n: int, rate_per_s: float) -> list[float]:
    """n arrival times of a Poisson process: exponential gaps of mean 1 / rate."""
    t, times = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate_per_s)
        times.append(t)
    return times


def bursty_arrivals(rng: random.Random, n: int, rate_per_s: float, burst_size: int = 16) -> list[float]:
    """n arrival times in bursts: `burst_size` requests land within a few milliseconds,
    bursts themselves arrive as a Poisson process; the mean rate is still `rate_per_s`."""
    times: list[float] = []
    t = 0.0
    while len(times) < n:
        t += rng.expovariate(rate_per_s / burst_size)
        times.extend(t + rng.uniform(0.0, 0.005) for _ in range(min(burst_size, n - len(times))))
    return sorted(times)


def make_trace(n: int, rate_per_s: float, *, seed: int = 0, arrivals: str = "poisson",
               burst_size: int = 16, prompt_median: int = 256, prompt_sigma: float = 1.0,
               prompt_max: int = 4096, output_median: int = 128, output_sigma: float = 1.0,
               output_max: int = 2048) -> list[Request]:
    """A single-turn trace of n requests, deterministic in `seed`.

    arrivals: "poisson" or "bursty". Lengths are log-normal (median, sigma), clipped.
    """
    if n < 1 or rate_per_s <= 0:
        raise ValueError(f"need n >= 1 and rate_per_s > 0, got n={n}, rate_per_s={rate_per_s}")
    rng = random.Random(seed)
    if arrivals == "poisson":
        times = poisson_arrivals(rng, n, rate_per_s)
    elif arrivals == "bursty":
        times = bursty_arrivals(rng, n, rate_per_s, burst_size)
    else:
        raise ValueError(f"arrivals must be 'poisson' or 'bursty', got {arrivals!r}")
    prompts = lognormal_lengths(rng, n, prompt_median, prompt_sigma, 1, prompt_max)
    outputs = lognormal_lengths(rng, n, output_median, output_sigma, 1, output_max)
    return [Request(i, round(t, 6), p, o) for i, (t, p, o) in enumerate(zip(times, prompts, outputs))]


def multi_turn_trace(n_sessions: int, turns: int, rate_per_s: float, *, seed: int = 0,
                     system_prompt: int = 128, user_median: int = 64, output_median: int = 128,
                     think_time_s: float = 5.0, max_prompt: int = 8192) -> list[Request]:
    """Chat sessions: each turn resends the conversation so far plus a new message.

    Sessions start as a Poisson process; a session's next turn arrives a log-normal think
    time after its previous one (an open-loop approximation: it does not wait for the
    answer). Request ids follow arrival order.
    """
    rng = random.Random(seed)
    starts = poisson_arrivals(rng, n_sessions, rate_per_s)
    pending = []
    for session, start in enumerate(starts):
        t, history = start, system_prompt
        for _ in range(turns):
            message = lognormal_lengths(rng, 1, user_median, 0.8)[0]
            output = lognormal_lengths(rng, 1, output_median, 0.8, 1, 2048)[0]
            prompt = min(max_prompt, history + message)
            pending.append((t, session, prompt, output, min(history, prompt)))
            history = prompt + output
            t += think_time_s * math.exp(0.5 * rng.gauss(0.0, 1.0))
    pending.sort()
    return [Request(i, round(t, 6), p, o, s, prefix)
            for i, (t, s, p, o, prefix) in enumerate(pending)]
