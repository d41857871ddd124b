"""The serving benchmark: one chat trace, four ways of serving it, the same tokens.

A multi-turn chat trace (shared system prompts, histories that grow turn by turn) is
replayed through

1. `transformers` `generate`, one request at a time (what a naive server does);
2. `generate` on static batches of `static_batch_size`, in arrival order (each batch
   waits for its longest answer before the next one starts);
3. the course engine, one request at a time, with chapter 5's cache and decoding loop;
4. the course engine under chapter 6's scheduler, `run_batch` and `serve_on_engine`:
   continuous batching on a paged KV cache with prefix hits and preemption.

For each it prints output tokens/s, TTFT and TPOT percentiles, SLO attainment and
goodput, draws one plot, and checks that all four generate the same tokens. The
components of 3 and 4 come in as arguments: this module holds no chapter solutions
(`tools/bench_serving.py` loads the instructors' reference from the source notebooks).

    from llmopt.serve_bench import chat_workload, run_serving_benchmark
    workload = chat_workload(tokenizer, n_sessions=8, turns=4)       # 32 requests
    report = run_serving_benchmark(
        model, workload,
        generate_with_cache=generate_with_cache,                       # chapter 5
        scheduler_cls=ContinuousBatchingScheduler, run_batch=run_batch)  # chapter 6
    print(report.table())
    report.plot()
    report.speedup("engine, batch 1"), report.speedup("engine, continuous batching")

The load is saturating: every request is queued at time 0 in the trace's arrival order,
as in vLLM's offline throughput benchmark, so TTFT includes the wait behind earlier
requests. Greedy decoding; EOS does not stop a request (each emits exactly its trace
output length), so every system does the same work. Goodput is DistServe's capacity
[@zhong2024-distserve], the highest arrival rate at which >= 90 % of requests meet both
SLOs (`llmopt.metrics.goodput`). It is computed where one run determines it: for the two
one-request-at-a-time servers, whose service time per request does not depend on the
load, by replaying the measured service times at scaled arrival rates (a FIFO queue). A
batching server's step times depend on who shares the batch, so its goodput needs a
real run per rate: shown as n/a.

Wall times are measured on this machine, so run it on a quiet one and read ratios from
the same run; `tools/bench_serving.py` (`make bench`) prints the load average beside them.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import math
import os
import platform
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from llmopt.metrics import goodput, summarize
from llmopt.workload import Request, at_rate, multi_turn_trace

ONE_AT_A_TIME = "generate, one at a time"
STATIC = "generate, static batches"
ENGINE_BATCH_1 = "engine, batch 1"
ENGINE_TRACE = "engine, continuous batching"
# The continuous-batching server: 512 blocks of 16 tokens (8,192 tokens of KV: 24 MiB for
# the course model, 3 KiB a token), at most 32 sequences per step. With 8 sequences the
# 32-request trace measured 3.3x one-at-a-time generate, with 32 6.0x (make bench).
SERVE_DEFAULTS = {"num_blocks": 512, "block_size": 16, "max_num_seqs": 32}
GOODPUT_MAX_RATE = 1e4  # requests/s: a server that meets the SLOs even then shows "any"
# Text for the prompts: the standard library the course model was trained on (fixed
# modules, so the token stream depends only on the Python version).
CORPUS_MODULES = ("textwrap", "string", "dataclasses", "argparse", "json.encoder", "shlex")


# ---------------------------------------------------------------------------------------
# The workload
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChatWorkload:
    requests: tuple[Request, ...]  # arrival order; output_len = tokens each must emit
    prompts: tuple[tuple[int, ...], ...]  # token ids, prompts[i] for requests[i]

    def __len__(self) -> int:
        return len(self.requests)

    def shared_prefix_tokens(self) -> int:
        """Prompt tokens that an earlier prompt already started with (the most a prefix
        cache with unlimited memory could skip)."""
        seen, shared = [], 0
        for prompt in self.prompts:
            shared += max((_common_prefix(prompt, p) for p in seen), default=0)
            seen.append(prompt)
        return shared


def _common_prefix(a, b) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _corpus_ids(tokenizer) -> list[int]:
    text = "\n".join(inspect.getsource(importlib.import_module(m)) for m in CORPUS_MODULES)
    return tokenizer(text, verbose=False)["input_ids"]  # longer than the context: it is cut


def chat_workload(tokenizer, n_sessions: int = 8, turns: int = 4, *, seed: int = 0,
                  system_prompts: int = 2, system_len: int = 96, user_median: int = 24,
                  output_median: int = 32, output_max: int = 64, max_len: int = 512,
                  rate_per_s: float = 1.0) -> ChatWorkload:
    """A chat trace with token ids: `n_sessions` conversations of `turns` turns each.

    Arrivals and lengths come from `llmopt.workload.multi_turn_trace`. Session s opens with
    system prompt s % system_prompts (`system_len` tokens, shared across sessions) and goes
    on with a stream of its own; each turn's prompt is the conversation's first
    `prompt_len` tokens, so it begins with the previous turn's prompt: the trace is open
    loop, and the previous answer is stood in for by the conversation's next tokens.
    Prompt plus output stays within `max_len` (the model's context).
    """
    trace = multi_turn_trace(n_sessions, turns, rate_per_s, seed=seed, system_prompt=system_len,
                             user_median=user_median, output_median=output_median,
                             max_prompt=max_len - output_max)
    corpus = _corpus_ids(tokenizer)
    systems = [corpus[k * system_len:(k + 1) * system_len] for k in range(system_prompts)]
    body = corpus[system_prompts * system_len:]
    conversation_len = max_len  # the longest prompt any turn can have
    conversations = {}
    for s in range(n_sessions):
        start = (s * 7919 * conversation_len + seed * 104729) % max(1, len(body) - conversation_len)
        conversations[s] = systems[s % system_prompts] + body[start:start + conversation_len]
    requests = tuple(replace(r, output_len=max(1, min(r.output_len, output_max)))
                     for r in trace)
    prompts = tuple(tuple(conversations[r.session_id][:r.prompt_len]) for r in requests)
    return ChatWorkload(requests, prompts)


# ---------------------------------------------------------------------------------------
# One run's results
# ---------------------------------------------------------------------------------------

@dataclass
class Run:
    name: str
    tokens: dict[int, list[int]]  # request id -> generated ids
    records: list[dict]  # per request: arrival_s, first_token_s, finish_s, output_len
    wall_s: float  # the whole run, first request queued to last token
    service: list[tuple[float, float]] | None = None  # one-at-a-time: (to first token, total)
    extra: dict = field(default_factory=dict)

    @property
    def output_tokens(self) -> int:
        return sum(r["output_len"] for r in self.records)

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.wall_s


class _Progress:
    """tqdm if installed, else nothing: counts generated tokens."""

    def __init__(self, total: int, desc: str, enabled: bool):
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, desc=f"{desc:<30}", unit="tok", leave=True)
            except ImportError:
                pass

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _TokenClock:
    """A `transformers` streamer that notes when each step's tokens come out."""

    def __init__(self, progress: _Progress, rows: int):
        self.times: list[float] = []  # one per generated step (the prompt's put is skipped)
        self.progress, self.rows, self._prompt_seen = progress, rows, False

    def put(self, value) -> None:
        if not self._prompt_seen:  # the first put is the prompt itself
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())
        self.progress.update(self.rows)

    def end(self) -> None:
        pass


def _no_eos_config(model, max_new_tokens: int):
    config = copy.deepcopy(model.generation_config)
    config.eos_token_id = None  # every request emits exactly its output length
    config.do_sample, config.max_new_tokens, config.min_new_tokens = False, max_new_tokens, None
    if config.pad_token_id is None:
        config.pad_token_id = 0
    return config


def _left_padded(prompts, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):] = torch.tensor(prompt)
        mask[row, width - len(prompt):] = 1
    return ids, mask


# ---------------------------------------------------------------------------------------
# The four servers
# ---------------------------------------------------------------------------------------

def _generate_one(model, prompt, output_len: int, bar: _Progress):
    """One request through `model.generate`: (tokens, seconds to first token, seconds)."""
    ids = torch.tensor([prompt])
    clock = _TokenClock(bar, 1)
    began = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=clock,
                             generation_config=_no_eos_config(model, output_len))
    done = time.perf_counter()
    return out[0, len(prompt):].tolist(), clock.times[0] - began, done - began


class _TimedEngine:
    """The engine as chapter 5's decoding loop sees it, noting when each forward returns
    (the first is the prefill, whose logits give the first token)."""

    def __init__(self, engine, progress: _Progress):
        self._engine, self.progress, self.times = engine, progress, []
        self.weights, self.attention = engine.weights, engine.attention
        self.eos_token_id, self.pad_token_id = engine.eos_token_id, engine.pad_token_id

    def forward(self, *args, **kwargs):
        logits = self._engine.forward(*args, **kwargs)
        self.times.append(time.perf_counter())
        self.progress.update(1)
        return logits


def _engine_one(engine, generate_with_cache: Callable, prompt, output_len: int, bar: _Progress):
    """One request through chapter 5's `generate_with_cache`: as `_generate_one`."""
    timed = _TimedEngine(engine, bar)
    ids = torch.tensor([prompt])
    began = time.perf_counter()
    with torch.inference_mode():
        out = generate_with_cache(timed, ids, torch.ones_like(ids), output_len)
    done = time.perf_counter()
    return out[0, len(prompt):].tolist(), timed.times[0] - began, done - began


def _fifo_run(name: str, workload: ChatWorkload, results: list) -> Run:
    """A one-request-at-a-time server's run from its requests' (tokens, to first token,
    total) in arrival order: all queued at t=0, request i starts when i-1 is done."""
    tokens, records, clock = {}, [], 0.0
    for r, (ids, to_first, total) in zip(workload.requests, results):
        tokens[r.request_id] = ids
        records.append({"request_id": r.request_id, "arrival_s": 0.0,
                        "first_token_s": clock + to_first, "finish_s": clock + total,
                        "output_len": r.output_len})
        clock += total
    return Run(name, tokens, records, clock, [(f, t) for _, f, t in results])


def run_one_at_a_time(model, engine, workload: ChatWorkload, generate_with_cache: Callable,
                      progress: bool = True) -> tuple[Run, Run]:
    """Each request alone, through `generate` and through the engine with chapter 5's
    `generate_with_cache(engine, input_ids, attention_mask, max_new_tokens)`, the two
    interleaved request by request: a load that comes and goes on a shared machine then
    slows both alike, and their ratio stays fair."""
    total = sum(r.output_len for r in workload.requests)
    bar = _Progress(2 * total, f"{ONE_AT_A_TIME} | {ENGINE_BATCH_1}", progress)
    first = workload.requests[0]  # warm-up, not counted: first-call allocations and caches
    _generate_one(model, workload.prompts[0], first.output_len, _Progress(0, "", False))
    _engine_one(engine, generate_with_cache, workload.prompts[0], first.output_len,
                _Progress(0, "", False))
    reference, engine_results = [], []
    for r, prompt in zip(workload.requests, workload.prompts):
        reference.append(_generate_one(model, prompt, r.output_len, bar))
        engine_results.append(_engine_one(engine, generate_with_cache, prompt, r.output_len, bar))
    bar.close()
    return (_fifo_run(ONE_AT_A_TIME, workload, reference),
            _fifo_run(ENGINE_BATCH_1, workload, engine_results))


def run_static_batches(model, workload: ChatWorkload, batch_size: int,
                       progress: bool = True) -> Run:
    """`model.generate` (greedy, no EOS) on left-padded batches of `batch_size` requests
    in arrival order, one batch after another. A request is finished when its last token
    comes out (streamed); its batch goes on to the longest answer in it."""
    batches = [workload.requests[i:i + batch_size] for i in range(0, len(workload), batch_size)]
    bar = _Progress(sum(len(b) * max(r.output_len for r in b) for b in batches), STATIC, progress)
    tokens, records = {}, []
    start = time.perf_counter()
    for first in range(0, len(workload), batch_size):
        requests = workload.requests[first:first + batch_size]
        ids, mask = _left_padded(workload.prompts[first:first + batch_size],
                                 model.generation_config.pad_token_id or 0)
        clock = _TokenClock(bar, len(requests))
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, streamer=clock,
                                 generation_config=_no_eos_config(
                                     model, max(r.output_len for r in requests)))
        for row, r in enumerate(requests):
            tokens[r.request_id] = out[row, ids.shape[1]:ids.shape[1] + r.output_len].tolist()
            records.append({"request_id": r.request_id, "arrival_s": 0.0,
                            "first_token_s": clock.times[0] - start,
                            "finish_s": clock.times[r.output_len - 1] - start,
                            "output_len": r.output_len})
    bar.close()
    return Run(STATIC, tokens, records, time.perf_counter() - start)


def run_engine_trace(engine, workload: ChatWorkload, scheduler_cls, run_batch: Callable,
                     progress: bool = True, **serve_options) -> Run:
    """Chapter 6's scheduler and `run_batch` through `llmopt.serving.serve_on_engine`, all
    requests queued at step 0 in arrival order. `serve_options` go to serve_on_engine
    (num_blocks, block_size, max_num_seqs, max_num_batched_tokens), over SERVE_DEFAULTS."""
    from llmopt.serving import serve_on_engine

    serve_options = {**SERVE_DEFAULTS, **serve_options}
    bar = _Progress(sum(r.output_len for r in workload.requests), ENGINE_TRACE, progress)
    first_token, finish = {}, {}

    def timed_run_batch(*args):  # whatever serve_on_engine hands run_batch, passed on
        emitted = run_batch(*args)
        now = time.perf_counter() - start
        for request_id in emitted:
            first_token.setdefault(int(request_id), now)
            finish[int(request_id)] = now
        bar.update(len(emitted))
        return emitted

    start = time.perf_counter()
    served = serve_on_engine(engine, [list(p) for p in workload.prompts],
                             [r.output_len for r in workload.requests], scheduler_cls,
                             timed_run_batch, **serve_options)
    wall = time.perf_counter() - start
    bar.close()
    tokens = {int(k): list(map(int, v)) for k, v in served["tokens"].items()}
    records = [{"request_id": r.request_id, "arrival_s": 0.0,
                "first_token_s": first_token[r.request_id], "finish_s": finish[r.request_id],
                "output_len": r.output_len} for r in workload.requests]
    extra = {"steps": len(served["steps"]),
             "preemptions": sum(served.get("preemptions", {}).values()),
             "prefix_hit_tokens": sum(served.get("prefix_hit_tokens", {}).values()),
             "computed_tokens": served.get("computed_tokens")}
    return Run(ENGINE_TRACE, tokens, records, wall, None, extra)


# ---------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------

def fifo_goodput(run: Run, workload: ChatWorkload, ttft_slo_s: float, tpot_slo_s: float,
                 attainment: float = 0.9) -> float:
    """DistServe goodput (requests/s) of a one-request-at-a-time server, from its measured
    service times: at each probed rate the trace's arrivals are rescaled (`at_rate`), and
    request i starts when it has arrived and request i-1 has finished (a FIFO queue)."""
    def records_at(rate: float) -> list[dict]:
        free_at, records = 0.0, []
        for r, (to_first, total) in zip(at_rate(list(workload.requests), rate), run.service):
            begin = max(r.arrival_s, free_at)
            free_at = begin + total
            records.append({"arrival_s": r.arrival_s, "first_token_s": begin + to_first,
                            "finish_s": free_at, "output_len": r.output_len})
        return records
    return goodput(records_at, ttft_slo_s, tpot_slo_s, attainment=attainment,
                   max_rate=GOODPUT_MAX_RATE)


def first_difference(a: list[int], b: list[int]) -> int | None:
    if a == b:
        return None
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


@dataclass
class ServingReport:
    runs: dict[str, Run]
    workload: ChatWorkload
    ttft_slo_s: float
    tpot_slo_s: float
    hardware: str
    weight_bytes: int = 0  # read once per decode step
    copy_bytes_per_s: float | None = None  # llmopt.device's calibrated ceiling, if measured
    rounds: list[dict[str, float]] = field(default_factory=list)  # tokens/s per server, per round

    def summary(self, name: str) -> dict:
        run = self.runs[name]
        out = summarize(run.records, self.ttft_slo_s, self.tpot_slo_s)
        out["tokens_per_s"] = run.tokens_per_s
        out["goodput_rps"] = (fifo_goodput(run, self.workload, self.ttft_slo_s, self.tpot_slo_s)
                              if run.service is not None else math.nan)
        return out

    def speedup(self, name: str, baseline: str = ONE_AT_A_TIME) -> float:
        """Output tokens/s of `name` over the baseline's: the median over rounds of each
        round's ratio (a load that comes and goes moves a ratio less than a rate)."""
        rounds = self.rounds or [{n: r.tokens_per_s for n, r in self.runs.items()}]
        return float(np.median([r[name] / r[baseline] for r in rounds]))

    def mismatches(self, reference: str = ONE_AT_A_TIME) -> list[tuple[str, int, int]]:
        """(run, request id, first differing token index) wherever a run's tokens differ
        from the reference run's."""
        ref = self.runs[reference].tokens
        return [(name, rid, k) for name, run in self.runs.items() if name != reference
                for rid in sorted(ref) if (k := first_difference(run.tokens[rid], ref[rid])) is not None]

    def table(self) -> str:
        w, reqs = self.workload, self.workload.requests
        prompt_tokens = sum(len(p) for p in w.prompts)
        lines = [f"hardware: {self.hardware}",
                 f"workload: {len(w)} chat requests, {len({r.session_id for r in reqs})} sessions; "
                 f"{prompt_tokens} prompt tokens ({w.shared_prefix_tokens()} in prefixes an earlier "
                 f"prompt shares), {sum(r.output_len for r in reqs)} output tokens; all queued at t=0",
                 f"rounds: {max(1, len(self.rounds))} (the table shows the last; 'x gen.' is the "
                 f"median over rounds of tok/s over one-at-a-time generate's in the same round)",
                 f"SLOs: TTFT <= {self.ttft_slo_s:g} s, TPOT <= {self.tpot_slo_s * 1e3:g} ms; "
                 f"goodput = highest arrival rate with >= 90% of requests within both",
                 "",
                 f"{'server':<30}{'tok/s':>8}{'x gen.':>8}{'TTFT p50':>10}{'p90':>8}{'p99':>8}"
                 f"{'TPOT p50':>10}{'p90':>8}{'p99':>8}{'SLO met':>9}{'goodput':>9}",
                 f"{'':<30}{'':>8}{'':>8}{'(s)':>10}{'':>8}{'':>8}{'(ms)':>10}{'':>8}{'':>8}"
                 f"{'':>9}{'(req/s)':>9}"]
        for name in self.runs:
            s = self.summary(name)
            good = ("n/a" if math.isnan(s["goodput_rps"]) else
                    "any" if s["goodput_rps"] >= GOODPUT_MAX_RATE else f"{s['goodput_rps']:.2f}")
            lines.append(
                f"{name:<30}{s['tokens_per_s']:>8.1f}{self.speedup(name):>7.2f}x"
                f"{s['ttft_p50_s']:>10.2f}{s['ttft_p90_s']:>8.2f}{s['ttft_p99_s']:>8.2f}"
                f"{s['tpot_p50_s'] * 1e3:>10.1f}{s['tpot_p90_s'] * 1e3:>8.1f}"
                f"{s['tpot_p99_s'] * 1e3:>8.1f}{s['slo_attainment']:>9.0%}{good:>9}")
        if self.weight_bytes:  # decode at batch 1 reads every weight once per token
            rates = {n: self.weight_bytes / self.summary(n)["tpot_p50_s"] for n in
                     (ONE_AT_A_TIME, ENGINE_BATCH_1) if n in self.runs}
            ceiling = (f" (copy bandwidth measured now: {self.copy_bytes_per_s / 1e9:.1f} GB/s, "
                       f"read + written)" if self.copy_bytes_per_s else "")
            lines.append(f"batch-1 decode reads {self.weight_bytes / 1e6:.1f} MB of weights per token: "
                         + ", ".join(f"{n} {r / 1e9:.1f} GB/s" for n, r in rates.items())
                         + " at the p50 TPOT" + ceiling)
        alone = {n: self.runs[n].service for n in (ONE_AT_A_TIME, ENGINE_BATCH_1)
                 if n in self.runs and self.runs[n].service}
        if len(alone) == 2:  # where batch 1's time goes: prefill vs decode, per request
            split = {n: (sum(f for f, _ in v), sum(t - f for f, t in v)) for n, v in alone.items()}
            (gen_prefill, gen_decode), (eng_prefill, eng_decode) = split.values()
            lines.append(
                f"batch 1, summed over requests: generate prefill {gen_prefill:.1f} s + decode "
                f"{gen_decode:.1f} s; engine prefill {eng_prefill:.1f} s + decode {eng_decode:.1f} s "
                f"(speed-up: decode {gen_decode / eng_decode:.2f}x, prefill {gen_prefill / eng_prefill:.2f}x; "
                f"a prefill is large matmuls, the same work for both)")
        trace = self.runs.get(ENGINE_TRACE)
        if trace is not None and trace.extra:
            e = trace.extra
            lines.append(f"continuous batching: {e['steps']} steps, {e['preemptions']} preemptions, "
                         f"{e['prefix_hit_tokens']} prompt tokens found in the prefix cache, "
                         f"{e['computed_tokens']} tokens computed")
        bad = self.mismatches()
        agree = len(w) - len({rid for _, rid, _ in bad})
        lines.append(f"tokens: {agree} of {len(w)} requests identical across all "
                     f"{len(self.runs)} servers" + ("" if not bad else "; differences (server, "
                     f"request, first token): {bad[:8]}"))
        return "\n".join(lines)

    def plot(self, ax=None):
        """Output tokens/s per server, with each server's TTFT p50 and p99 beside it."""
        import matplotlib.pyplot as plt

        from llmopt.plots import PALETTE, use_course_style

        use_course_style()
        if ax is None:
            _, ax = plt.subplots(1, 2, figsize=(10, 3.6))
        names = list(self.runs)
        summaries = [self.summary(n) for n in names]
        y = range(len(names))
        ax[0].barh(y, [s["tokens_per_s"] for s in summaries], color=PALETTE[:len(names)])
        for i, n in enumerate(names):
            ax[0].annotate(f"{self.speedup(n):.2f}x", (summaries[i]["tokens_per_s"], i),
                           xytext=(4, -3), textcoords="offset points", fontsize=8)
        ax[0].set(yticks=list(y), yticklabels=names, xlabel="output tokens/s",
                  title="Throughput (x: over one-at-a-time generate)")
        ax[0].invert_yaxis()
        ax[1].barh([i - 0.2 for i in y], [s["ttft_p50_s"] for s in summaries], height=0.4,
                   color=PALETTE[0], label="p50")
        ax[1].barh([i + 0.2 for i in y], [s["ttft_p99_s"] for s in summaries], height=0.4,
                   color=PALETTE[1], label="p99")
        ax[1].set(yticks=list(y), yticklabels=[""] * len(names), xlabel="TTFT (s)",
                  title="Time to first token, all queued at t=0")
        ax[1].invert_yaxis()
        ax[1].legend()
        return ax


def hardware_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    load = ", load average %.2f %.2f %.2f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    return (f"{cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
            f"torch {torch.__version__}{load}")


def run_serving_benchmark(model, workload: ChatWorkload, *, generate_with_cache: Callable,
                          scheduler_cls=None, run_batch: Callable | None = None, engine=None,
                          static_batch_size: int = 8, ttft_slo_s: float = 1.0,
                          tpot_slo_s: float = 0.05, progress: bool = True,
                          serve_options: dict | None = None,
                          copy_bytes_per_s: float | None = None,
                          rounds: int = 1) -> ServingReport:
    """Serve `workload` four ways (module docstring) and return the report.

    The two one-at-a-time servers run interleaved, request by request (their ratio is the
    batch-1 speed-up); the two batching servers run after them, one after the other.
    `engine` defaults to the course engine on `model`'s weights, with EOS off (every
    request emits its trace length, as the other servers do). `serve_options` go to
    `serve_on_engine`; the default is a pool of 512 blocks of 16 tokens and at most 32
    sequences per step. `copy_bytes_per_s` (from `llmopt.device.calibrate()`) puts the
    batch-1 weight-read rate beside the machine's measured ceiling. Without
    `scheduler_cls` (chapter 5, before the scheduler exists) the fourth run is left out. With `rounds` > 1 the
    four runs repeat; the table shows the last round, speed-ups are medians over rounds.
    """
    from llmopt.engine import Engine

    if engine is None:
        base = Engine.from_model(model)
        engine = Engine(base.weights, base.attention, eos_token_id=None,
                        pad_token_id=base.pad_token_id)
    options = {**SERVE_DEFAULTS, **(serve_options or {})}
    per_round = []
    for _ in range(rounds):
        runs = {}
        runs[ONE_AT_A_TIME], runs[ENGINE_BATCH_1] = run_one_at_a_time(
            model, engine, workload, generate_with_cache, progress)
        runs[STATIC] = run_static_batches(model, workload, static_batch_size, progress)
        if scheduler_cls is not None:  # chapter 6's part; chapter 5 runs without it
            runs[ENGINE_TRACE] = run_engine_trace(engine, workload, scheduler_cls, run_batch,
                                                  progress, **options)
        per_round.append({name: run.tokens_per_s for name, run in runs.items()})
    unique = {p.data_ptr(): p.numel() * p.element_size() for p in model.parameters()}
    return ServingReport(runs, workload, ttft_slo_s, tpot_slo_s, hardware_line(),
                         sum(unique.values()), copy_bytes_per_s, per_round)
