"""How far longer training takes chapter 8's EAGLE-1 head, measured offline on the CPU.

    python tools/eagle_tau_study.py [--steps 180 600 1500 3000] [--threads 1] [--train-tokens 65536]

(the defaults take about 16 minutes on one thread of the course machine's CPU.)

The reference code is read from the source notebook (its setup and solution cells, as the
grader assembles a student's code); the head is trained and measured as section 6 of the
notebook does it: `train_eagle_head(target, windows, steps, batch=8)` with seed 0 on
65,536 tokens of the train split in windows of 128, the first draft's agreement with the
target's greedy token on 8 x 128 held-out tokens (true features), and tau and the median
speed-up of `eagle_generate` over plain cached decoding on section 3's 8 held-out prompts,
64 new tokens each, each prompt timed both ways back to back, tokens checked equal ("train
s" counts the target's features of the training windows too; the loss is the mean of the
last 20 steps, on training windows). For
comparison it measures the draft model (chain, g = 5) on the same prompts, and how peaked
the target is on its own greedy continuations: the mean probability of its top token and
the share of near-ties (top-1 minus top-2 below 0.1), where a drafter that only
approximates the target easily picks the other of the two.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.bench_serving import chapter_namespace  # noqa: E402

SLUG = "ch08_speculative_decoding"


def with_timing_loop(ns: dict) -> dict:
    """ns plus the notebook's plain_generate and timed_against_plain: the demo cell that
    defines them (and nothing else) runs in ns, so the study times exactly as the notebook."""
    import jupytext

    nb = jupytext.read(ROOT / "source" / SLUG / f"{SLUG}.py")
    cell = next(c for c in nb.cells if c.cell_type == "code" and "def timed_against_plain(" in c.source)
    exec(compile(cell.source, f"<{SLUG} timing loop>", "exec"), ns)
    return ns


def heldout_agreement(ns: dict, head) -> float:
    """How often the head's first draft is the target's greedy token, with the target's true
    features, on the notebook's 8 x 128 held-out tokens (its section 6 measure)."""
    import torch

    from llmopt.quality import heldout_tokens

    held = heldout_tokens(8 * 128).view(8, 128)
    with torch.inference_mode():
        features, greedy = ns["target_features"](ns["target"], held)
        logits, _ = head(held[:, 1:], features[:, :-1], torch.arange(127)[None].expand(8, 127))
    return float((logits.argmax(dim=-1) == greedy[:, 1:]).float().mean())


def acceptance_by_depth(taus, gamma):
    """P(draft k accepted | drafts 1..k-1 accepted), k = 1..gamma, from per-cycle tokens."""
    reached = [sum(1 for t in taus if t - 1 >= k) for k in range(gamma + 1)]
    return [reached[k] / reached[k - 1] if reached[k - 1] else float("nan") for k in range(1, gamma + 1)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[180, 600, 1500, 3000])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--train-tokens", type=int, default=65_536, help="the notebook's 65,536")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    from llmopt.device import fingerprint
    from llmopt.quality import calibration_tokens

    ns = with_timing_loop(chapter_namespace(SLUG))
    torch.set_num_threads(args.threads)
    target, draft = ns["target"], ns["draft"]
    prompts, new_tokens = ns["held_out_prompts"](8), 64  # section 3's prompts, as the notebook
    train = calibration_tokens(args.train_tokens, window=128)
    print(f"{fingerprint('cpu').device_name}, torch threads {args.threads}; train {train.numel():,} tokens ({len(train)} windows of 128); "
          f"8 prompts x {new_tokens} new tokens")

    # How peaked the target is on its own greedy continuations.
    top1, near_tie = [], []
    with torch.inference_mode():
        for prompt in prompts:
            seq = ns["plain_generate"](target, prompt, new_tokens)
            logits = target.forward(seq, torch.arange(seq.shape[1])[None])[0, prompt.shape[1] - 1:-1]
            best = logits.float().softmax(dim=-1).topk(2, dim=-1).values  # (new_tokens, 2)
            top1 += best[:, 0].tolist()
            near_tie += (best[:, 0] - best[:, 1] < 0.1).tolist()
    print(f"target on its greedy continuations: top-1 probability mean {statistics.mean(top1):.2f}, "
          f"median {statistics.median(top1):.2f}; near-ties (top-1 - top-2 < 0.1) {statistics.mean(near_tie):.0%}")

    taus, speedup = ns["timed_against_plain"](
        target, lambda p, n: ns["speculative_generate"](target, draft, p, n, 5), prompts, new_tokens)
    depth = ", ".join(f"{a:.2f}" for a in acceptance_by_depth(taus, 5))
    print(f"draft model, chain g = 5: tau {statistics.mean(taus):.2f}, speed-up {speedup:.2f}x; "
          f"acceptance by depth {depth}")

    print(f"\n{'steps':>6} {'train s':>8} {'agreement':>10} {'tau g=2':>8} {'speed-up':>9} {'tau g=5':>8} "
          f"{'speed-up':>9}  acceptance by depth (g=5)")
    for steps in args.steps:
        start = time.perf_counter()
        head = ns["train_eagle_head"](target, train, steps, seed=args.seed, batch=8)
        train_s = time.perf_counter() - start
        agreement = heldout_agreement(ns, head)
        row = [f"{steps:6d} {train_s:8.0f} {agreement:10.2f}"]
        for gamma in (2, 5):
            taus, speedup = ns["timed_against_plain"](
                target, lambda p, n: ns["eagle_generate"](target, head, p, n, gamma), prompts, new_tokens)
            row.append(f"{statistics.mean(taus):8.2f} {speedup:8.2f}x")
        depth = ", ".join(f"{a:.2f}" for a in acceptance_by_depth(taus, 5))
        print(" ".join(row) + f"  {depth}  (loss {statistics.mean(head.losses[-20:]):.2f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
