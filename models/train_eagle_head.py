"""Train chapter 8's EAGLE-1 draft head for `course-lm` offline, with the data it needs.

    .venv/bin/python models/train_eagle_head.py      # or: make models (after models/train.py)

The notebook trains its head for under a minute on 65,536 tokens, which leaves it at
tau ~1.5; tools/eagle_tau_study.py measured that the head's limit is its training text,
not its steps (tau 2.8 after 3,000 steps on 262,144 tokens, 3.0 on 1,048,576). This script
trains the reference head (the notebook's own `EagleHead` and `train_eagle_head`, read from
source/ch08_speculative_decoding, as the grader assembles code) on 1,048,576 tokens of the
training split for 3,000 steps, seed 0, 2 torch threads (about 6 minutes here), and writes
models/course-lm-eagle/head.safetensors (its parameters by name) and a card with the
measured agreement. The notebook loads it into its `EagleHead` and measures it beside the
head it trained itself.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from tools.bench_serving import chapter_namespace  # noqa: E402
from tools.eagle_tau_study import heldout_agreement  # noqa: E402

OUT = ROOT / "models" / "course-lm-eagle"
TOKENS, STEPS, SEED, BATCH, THREADS = 1_048_576, 3_000, 0, 8, 2


def main() -> int:
    from llmopt.quality import calibration_tokens

    torch.set_num_threads(THREADS)
    ns = chapter_namespace("ch08_speculative_decoding")
    target = ns["target"]
    train = calibration_tokens(TOKENS, window=128)
    started = time.perf_counter()
    head = ns["train_eagle_head"](target, train, STEPS, seed=SEED, batch=BATCH, progress=True)
    seconds = time.perf_counter() - started
    agreement = heldout_agreement(ns, head)
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({name: p.detach().contiguous() for name, p in head.named_parameters()}, OUT / "head.safetensors")
    report = {"tokens": TOKENS, "steps": STEPS, "seed": SEED, "batch": BATCH, "torch_threads": THREADS,
              "train_seconds": round(seconds), "final_loss_mean_last_20": sum(head.losses[-20:]) / 20,
              "first_draft_agreement_heldout": agreement,
              "parameters": sum(p.numel() for p in head.parameters())}
    (OUT / "training_report.json").write_text(json.dumps(report, indent=1) + "\n")
    (OUT / "README.md").write_text(
        "# course-lm-eagle\n\n"
        "Chapter 8's EAGLE-1 draft head for `course-lm` (fc over [token embedding; the target's last-layer "
        "feature] and one decoder layer; the target's embedding, final norm and LM head are not part of it), "
        f"trained by `models/train_eagle_head.py`: {TOKENS:,} tokens of the training split in windows of 128, "
        f"{STEPS:,} steps of batch {BATCH}, seed {SEED}, {THREADS} torch threads, {seconds / 60:.1f} minutes. "
        f"{report['parameters']:,} parameters. Its first draft matches the target's greedy token on "
        f"{agreement:.0%} of held-out positions (true features). Parameters are stored by the names of the "
        "notebook's reference `EagleHead`; `training_report.json` holds the numbers.\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
