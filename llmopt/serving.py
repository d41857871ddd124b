"""The same scheduler, driving the real course model instead of the cost model.

`serve_on_engine` runs the loop of `llmopt.simulator` with real tokens: each step it
asks the scheduler for a `Batch` (the very class the simulator runs), hands the batch to
`run_batch(engine, batch) -> {request_id: next_token}` (chapter 6's exercise 5), and
appends the tokens. Time is counted in steps; wall time per step is recorded too.

The engine here has no KV cache (chapter 5 builds one), so every step recomputes each
scheduled sequence's whole prefix. That makes preemption by recompute free of state, and
keeps the point of the exercise in view: batching must not change what a request says.
"""

from __future__ import annotations

import time

import torch

from llmopt.simulator import Instance, KVBlockPool, Limits, Sequence, SchedulingError
from llmopt.workload import Request


def serve_on_engine(engine, prompts: list[list[int]], output_lens: list[int], scheduler_cls, run_batch,
                    *, arrival_steps: list[int] | None = None, num_blocks: int = 64, block_size: int = 4,
                    max_num_seqs: int = 4, max_num_batched_tokens: int | None = None,
                    max_steps: int = 10_000) -> dict:
    """Serve `prompts` (token-id lists) for `output_lens` tokens each, greedily.

    Returns {"tokens": {request_id: [generated ids]}, "steps": [{"step", "batch",
    "preempted", "seconds"}], "preemptions": {request_id: count}}. Request i arrives at
    step arrival_steps[i] (default: all at step 0).
    """
    arrival_steps = arrival_steps or [0] * len(prompts)
    requests = [Request(i, float(a), len(p), int(n)) for i, (p, n, a) in
                enumerate(zip(prompts, output_lens, arrival_steps))]
    seqs = [Sequence(r, token_ids=list(map(int, p))) for r, p in zip(requests, prompts)]
    scheduler = scheduler_cls(KVBlockPool(num_blocks, block_size), Limits(max_num_seqs, max_num_batched_tokens))
    instance = Instance(0, scheduler, None, "both", strict=True)
    pending = sorted(seqs, key=lambda s: (s.arrival_s, s.request_id))
    steps, step, unfinished = [], 0, len(seqs)
    while unfinished:
        while pending and pending[0].arrival_s <= step:
            scheduler.add_request(pending.pop(0))
        batch = instance.plan(float(step)) if scheduler.has_work() else None
        if batch is not None and (batch or batch.preempted):
            emitting = {seq.request_id for seq, n in batch.scheduled
                        if seq.num_computed_tokens + n == seq.num_tokens}
            started = time.perf_counter()
            with torch.no_grad():
                tokens = run_batch(engine, batch) if batch else {}
            seconds = time.perf_counter() - started
            if not isinstance(tokens, dict) or set(tokens) != emitting:
                raise SchedulingError(
                    f"run_batch must return {{request_id: token}} for exactly the sequences whose "
                    f"step reaches their last known token {sorted(emitting)}, got "
                    f"{sorted(tokens) if isinstance(tokens, dict) else type(tokens).__name__}")
            tokens = {k: int(v) for k, v in tokens.items()}
            steps.append({"step": step, "batch": [(s.request_id, n) for s, n in batch.scheduled],
                          "preempted": [s.request_id for s in batch.preempted], "seconds": seconds})
            _, done = instance.commit(batch, float(step), float(step + 1), tokens)
            unfinished -= len(done)
        elif not pending:
            raise SchedulingError(f"no progress at step {step}: the scheduler returned nothing to run")
        step += 1
        if step > max_steps:
            raise SchedulingError(f"not finished after {max_steps} steps")
    return {"tokens": {s.request_id: s.token_ids[s.prompt_len:] for s in seqs}, "steps": steps,
            "preemptions": {s.request_id: s.num_preemptions for s in seqs}}


def generate_alone(engine, prompt: list[int], num_tokens: int) -> tuple[list[int], list[float]]:
    """Greedy tokens of one request served by itself, and at each step the gap between
    the best and second-best logit (a small gap is a near-tie that float rounding can flip)."""
    ids = list(map(int, prompt))
    out, gaps = [], []
    with torch.no_grad():
        for _ in range(num_tokens):
            x = torch.tensor([ids])
            logits = engine.forward(x, torch.arange(len(ids))[None])[0, -1]
            top = torch.topk(logits, 2).values
            token = int(logits.argmax())
            out.append(token)
            gaps.append(float(top[0] - top[1]))
            ids.append(token)
    return out, gaps


NEAR_TIE = 1e-4  # top-2 logit gap below which float reassociation may flip a greedy pick


def near_tie_flips(served: dict, alone: list[tuple[list[int], list[float]]],
                   near_tie: float = NEAR_TIE) -> list[tuple[int, int, float]]:
    """Compare batched generation with generating each request alone (`generate_alone`).

    Batching changes the order of float additions, so where the best two logits of the
    lone run were closer than `near_tie`, the batched run may pick the other one; from
    there on the two continuations differ legitimately. Returns those flips as
    (request, token index, gap), to be reported; any other difference raises
    AssertionError with the request and token where it starts.
    """
    flips = []
    for i, (tokens, gaps) in enumerate(alone):
        got = served["tokens"][i] if i in served["tokens"] else served["tokens"][str(i)]
        assert len(got) == len(tokens), f"request {i} generated {len(got)} tokens, expected {len(tokens)}"
        if got != tokens:
            k = next(j for j, (a, b) in enumerate(zip(got, tokens)) if a != b)
            assert gaps[k] < near_tie, (
                f"request {i} differs from generating it alone at token {k} (top-2 logit gap "
                f"{gaps[k]:.2e}, not a near-tie): check the left padding and the positions")
            flips.append((i, k, gaps[k]))
    return flips
