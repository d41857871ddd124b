"""Train the course's two language models from the Python standard library's source.

    .venv/bin/python models/train.py            # or: make models

Nothing is downloaded: the corpus is the `.py` source of the interpreter that runs this
script, so anyone can rebuild the models offline. The steps, all seeded and in a fixed
order so that a rerun on the same interpreter and library versions repeats them:

1. Corpus: the standard library's `.py` files in sorted order, minus tests, vendored
   packages and data tables (see `EXCLUDED_DIRS`). Every `HELDOUT_EVERY`-th file is held
   out, so held-out text is code the models never saw, not a random slice of a seen file.
2. Tokenizer: byte-level BPE (`tokenizers`) trained on the training files only.
3. Two Llama-architecture causal LMs with that tokenizer (GQA, RoPE, RMSNorm, SwiGLU):
   `course-lm` (~5M parameters) and `course-lm-draft` (~1M, chapter 8's draft model).
4. Evaluation on the held-out files, sample completions, the draft's greedy agreement
   with `course-lm`, and a model card per model (`README.md` in its directory).

Progress goes to stderr (tqdm) and to `models/train.log`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning. With spinning, a thread that finished its
# half of an op burns the core its partner needs whenever another process holds the other
# core: training on this 2-core machine ran 2.5x slower while a notebook was graded.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import (  # noqa: E402
    Tokenizer, decoders, models, pre_tokenizers, processors, trainers)
from tqdm import tqdm  # noqa: E402
from transformers import (  # noqa: E402
    GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast)

from llmopt.corpus import (  # noqa: E402  (the corpus split, shared with llmopt.quality)
    CONTEXT, EXCLUDED_DIRS, HELDOUT_EVERY, build_corpus, encode_documents, heldout_windows)

MODELS_DIR = Path(__file__).resolve().parent
SEED = 1234
THREADS = 2  # the course machine has 2 cores; more threads only oversubscribe them
VOCAB_SIZE = 4096
BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SAMPLE_PROMPTS = ("import os\n", "def __init__(self", "class Queue:\n    ",
                  "    for i in range(", "    except KeyError:\n")

log = logging.getLogger("train")


# ---------------------------------------------------------------------------------------
# 1. Corpus
# ---------------------------------------------------------------------------------------

# The corpus lives in llmopt.corpus (Corpus, build_corpus, HELDOUT_EVERY, EXCLUDED_DIRS):
# chapter 7 measures perplexity on exactly the held-out split these models never saw.


# ---------------------------------------------------------------------------------------
# 2. Tokenizer
# ---------------------------------------------------------------------------------------

def train_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """Byte-level BPE: every byte string is encodable, so no <unk> is ever needed."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=2,
                                  special_tokens=[BOS, EOS, PAD], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    # Like Llama's tokenizer, prepend <|bos|>: each training document starts with it.
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        padding_side="left",  # decoder-only batches pad on the left so prompts end together
        model_max_length=CONTEXT)


# ---------------------------------------------------------------------------------------
# 3. Models
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    name: str
    hidden_size: int
    intermediate_size: int  # SwiGLU width
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int  # < num_attention_heads: grouped-query attention
    steps: int
    batch_size: int  # sequences of CONTEXT tokens per step
    learning_rate: float
    warmup_steps: int


SPECS = {
    "course-lm": ModelSpec("course-lm", hidden_size=256, intermediate_size=640,
                           num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=2,
                           steps=720, batch_size=8, learning_rate=2e-3, warmup_steps=40),
    "course-lm-draft": ModelSpec("course-lm-draft", hidden_size=128, intermediate_size=352,
                                 num_hidden_layers=3, num_attention_heads=4,
                                 num_key_value_heads=2, steps=240, batch_size=16,
                                 learning_rate=3e-3, warmup_steps=30),
}


def llama_config(spec: ModelSpec, tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size, num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads, max_position_embeddings=CONTEXT,
        rope_theta=10000.0, rms_norm_eps=1e-5, hidden_act="silu",
        tie_word_embeddings=True,  # the embedding is 1/5 of the model: don't store it twice
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)


def learning_rate(spec: ModelSpec, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < spec.warmup_steps:
        return spec.learning_rate * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return spec.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_model(spec: ModelSpec, tokenizer: PreTrainedTokenizerFast,
                train_tokens: torch.Tensor) -> tuple[LlamaForCausalLM, float]:
    """Plain AdamW on random CONTEXT-token windows of the training stream."""
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(llama_config(spec, tokenizer))
    model.train()
    decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices; not norm gains
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=spec.learning_rate, betas=(0.9, 0.95))
    data_order = torch.Generator().manual_seed(SEED)  # the batches depend on SEED only
    n_windows = len(train_tokens) - CONTEXT - 1
    started = time.perf_counter()
    progress = tqdm(range(spec.steps), desc=spec.name, file=sys.stderr, mininterval=5)
    for step in progress:
        starts = torch.randint(0, n_windows, (spec.batch_size,), generator=data_order)
        batch = torch.stack([train_tokens[s:s + CONTEXT] for s in starts])  # (B, T)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(spec, step)
        loss = model(input_ids=batch, labels=batch).loss  # labels shift inside the model
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        progress.set_postfix(loss=f"{loss.item():.3f}")
        if step % 20 == 0 or step == spec.steps - 1:
            log.info("%s step %d/%d loss %.4f lr %.2e elapsed %.0fs", spec.name, step,
                     spec.steps, loss.item(), learning_rate(spec, step),
                     time.perf_counter() - started)
    model.eval()
    return model, time.perf_counter() - started


# ---------------------------------------------------------------------------------------
# 4. Evaluation and model cards
# ---------------------------------------------------------------------------------------

@torch.no_grad()
def heldout_logits(model: LlamaForCausalLM, windows: torch.Tensor):
    for start in range(0, len(windows), 16):
        batch = windows[start:start + 16]  # (b, T)
        yield batch, model(input_ids=batch).logits  # (b, T, V)


@torch.no_grad()
def evaluate(model: LlamaForCausalLM, windows: torch.Tensor) -> dict:
    """Mean next-token cross-entropy (nats) over every held-out position."""
    total_loss, total_tokens = 0.0, 0
    for batch, logits in heldout_logits(model, windows):
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1),
            reduction="sum")
        total_loss += loss.item()
        total_tokens += batch[:, 1:].numel()
    mean = total_loss / total_tokens
    return {"heldout_loss": mean, "heldout_perplexity": math.exp(mean),
            "heldout_tokens": total_tokens}


@torch.no_grad()
def greedy_agreement(draft: LlamaForCausalLM, target: LlamaForCausalLM,
                     windows: torch.Tensor) -> float:
    """Fraction of held-out positions where both models' argmax next token is the same.

    Teacher-forced on held-out text: this is the per-token acceptance rate of greedy
    speculative decoding when the draft sees the same prefix as the target.
    """
    same, total = 0, 0
    for (_, draft_logits), (_, target_logits) in zip(heldout_logits(draft, windows),
                                                     heldout_logits(target, windows)):
        same += (draft_logits.argmax(-1) == target_logits.argmax(-1)).sum().item()
        total += draft_logits.shape[0] * draft_logits.shape[1]
    return same / total


@torch.no_grad()
def sample_completions(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast,
                       max_new_tokens: int = 40) -> dict[str, str]:
    samples = {}
    for prompt in SAMPLE_PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt")
        out = model.generate(**ids, do_sample=False, max_new_tokens=max_new_tokens)
        samples[prompt] = tokenizer.decode(out[0, ids["input_ids"].shape[1]:],
                                           skip_special_tokens=False)
    return samples


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in
                 Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, torch using {torch.get_num_threads()} CPU threads"


def directory_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.is_file())


def write_card(out_dir: Path, spec: ModelSpec, model: LlamaForCausalLM, report: dict) -> None:
    c = model.config
    samples = "\n\n".join(f"Prompt `{prompt!r}` →\n\n```python\n{prompt}{completion}\n```"
                          for prompt, completion in report["samples"].items())
    corpus = report["corpus"]
    extra = ""
    if "draft_agreement" in report:
        extra = (f"| greedy top-1 agreement with `course-lm` (teacher-forced, held-out) | "
                 f"{report['draft_agreement']:.4f} |\n")
    card = f"""---
library_name: transformers
pipeline_tag: text-generation
tags: [llama, course, python-code]
---

# {spec.name}

A {'draft ' if 'draft' in spec.name else ''}Llama-architecture causal language model of
the LLM inference optimization course, trained from scratch on the source code of the
Python standard library by `models/train.py` (rebuild: `make models`). It exists so that
every chapter has a real model that loads offline; it is not useful for anything else.
{"It is the draft model of chapter 8 and shares `course-lm`'s tokenizer." if 'draft' in spec.name else ""}

## Architecture

| | |
|---|---|
| parameters | {report['parameters']:,} (input and output embeddings tied) |
| layers | {c.num_hidden_layers} |
| hidden size | {c.hidden_size} |
| attention | {c.num_attention_heads} query heads, {c.num_key_value_heads} KV heads (grouped-query), head dim {c.hidden_size // c.num_attention_heads} |
| MLP | SwiGLU, intermediate size {c.intermediate_size} |
| norm | RMSNorm, eps {c.rms_norm_eps} |
| positions | RoPE, theta {c.rope_parameters['rope_theta']:g}, context {c.max_position_embeddings} tokens |
| vocabulary | {c.vocab_size} byte-level BPE tokens (`{BOS}`, `{EOS}`, `{PAD}`); the tokenizer prepends `{BOS}` |
| weights | float32 safetensors, {report['directory_bytes'] / 1e6:.1f} MB on disk for the whole directory |

The weights stay in float32: the directory is under the course's 25 MB limit, the engine
of `llmopt` is checked against `transformers` to 1e-4 in float32, and chapter 7 measures
what quantization costs relative to the trained weights, not to an already-rounded copy.

## Data

The `.py` files of the Python {corpus['python']} standard library found under the
interpreter's `stdlib` directory, sorted by path, excluding `{', '.join(sorted(EXCLUDED_DIRS))}`.
File number i (in sorted order) is held out when i % {HELDOUT_EVERY} == 0.

| split | files | bytes (UTF-8) | tokens |
|---|---|---|---|
| train | {corpus['train_files']} | {corpus['train_bytes']:,} | {report['train_tokens']:,} |
| held-out | {corpus['heldout_files']} | {corpus['heldout_bytes']:,} | {report['heldout_stream_tokens']:,} |

Corpus SHA-256 (file names and contents in order): `{corpus['sha256']}`. Another Python
version gives another corpus and other weights.

## Training

AdamW (betas 0.9/0.95, weight decay 0.1 on matrices), peak learning rate
{spec.learning_rate:g} after {spec.warmup_steps} warm-up steps, cosine decay to a tenth,
gradient clipping at 1.0, {spec.steps} steps of {spec.batch_size} random windows of
{CONTEXT} tokens ({spec.steps * spec.batch_size * CONTEXT:,} tokens seen), seed {SEED}.

| | |
|---|---|
| training time | {report['train_seconds'] / 60:.1f} min (this model only) |
| hardware | {report['hardware']} |
| software | torch {torch.__version__}, transformers {transformers.__version__}, tokenizers {tokenizers.__version__} |

## Evaluation (held-out files)

| metric | value |
|---|---|
| held-out loss (nats/token) | {report['heldout_loss']:.4f} |
| held-out perplexity | {report['heldout_perplexity']:.2f} |
| held-out tokens scored | {report['heldout_tokens']:,} |
{extra}
## Limitations

Both course models are trained for a fixed number of steps so that `make models` fits in
45 minutes on 2 CPU cores: about 3M tokens for `course-lm`, far below what a model of its
size could use, so both are small-data models (`course-lm` still has the lower held-out
perplexity of the two: compare the cards). Training times are wall-clock times on a
2-core machine shared with other jobs. Greedy completions repeat themselves, as small
models do.

## Greedy sample completions

{samples}
"""
    (out_dir / "README.md").write_text(card)


def load_trained(out_dir: Path, tokenizer: PreTrainedTokenizerFast,
                 heldout_tokens: torch.Tensor) -> tuple[LlamaForCausalLM, dict]:
    """A model trained by an earlier run, refused unless its tokenizer is this run's."""
    saved = PreTrainedTokenizerFast.from_pretrained(out_dir)
    same = (saved.get_vocab() == tokenizer.get_vocab()
            and torch.equal(encode_documents(saved, [tokenizer.decode(heldout_tokens)]),
                            encode_documents(tokenizer, [tokenizer.decode(heldout_tokens)])))
    if not same:
        raise SystemExit(f"{out_dir} was trained with another tokenizer: retrain all models")
    log.info("%s: loaded from %s (tokenizer identical to this run's)", out_dir.name, out_dir)
    model = LlamaForCausalLM.from_pretrained(out_dir, dtype=torch.float32).eval()
    return model, json.loads((out_dir / "training_report.json").read_text())


# ---------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="parent directory")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply every model's steps (a quick smoke run: 0.01)")
    parser.add_argument("--only", choices=list(SPECS), action="append",
                        help="retrain only this model (repeatable); the others are loaded "
                             "from --out, after checking that their tokenizer is this one")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        handlers=[logging.StreamHandler(sys.stderr),
                                  logging.FileHandler(args.out / "train.log", mode="a")])
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    all_started = time.perf_counter()
    log.info("=== models/train.py %s", " ".join(sys.argv[1:]))

    corpus = build_corpus()
    log.info("corpus %s", json.dumps(corpus.summary()))
    tokenizer = train_tokenizer(corpus.train_texts)
    train_tokens = encode_documents(tokenizer, corpus.train_texts)
    heldout_tokens = encode_documents(tokenizer, corpus.heldout_texts)
    windows = heldout_windows(heldout_tokens)
    log.info("tokens: train %d, held-out %d (%d windows)", len(train_tokens),
             len(heldout_tokens), len(windows))

    trained: dict[str, LlamaForCausalLM] = {}
    reports: dict[str, dict] = {}
    retrain = args.only or list(SPECS)
    for name, spec in SPECS.items():
        if name not in retrain:
            trained[name], reports[name] = load_trained(args.out / name, tokenizer,
                                                        heldout_tokens)
            continue
        spec = ModelSpec(**{**asdict(spec),
                            "steps": max(1, round(spec.steps * args.steps_scale))})
        model, seconds = train_model(spec, tokenizer, train_tokens)
        trained[name] = model
        reports[name] = {"spec": asdict(spec), "train_seconds": seconds,
                         "parameters": sum(p.numel() for p in model.parameters()),
                         "corpus": corpus.summary(), "hardware": hardware(),
                         "train_tokens": len(train_tokens),
                         "heldout_stream_tokens": len(heldout_tokens),
                         **evaluate(model, windows),
                         "samples": sample_completions(model, tokenizer)}
        log.info("%s: %s", name, {k: v for k, v in reports[name].items()
                                  if k not in ("samples", "corpus", "spec")})
    reports["course-lm-draft"]["draft_agreement"] = greedy_agreement(
        trained["course-lm-draft"], trained["course-lm"], windows)
    log.info("draft agreement %.4f", reports["course-lm-draft"]["draft_agreement"])

    for name, model in trained.items():
        out_dir = args.out / name
        out_dir.mkdir(parents=True, exist_ok=True)
        if name in retrain:  # the others keep their files; only the card may change
            model.generation_config = GenerationConfig(
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, do_sample=False)
            model.save_pretrained(out_dir, safe_serialization=True)
            tokenizer.save_pretrained(out_dir)
        # Twice: the card states the directory's size, which includes the card itself.
        for _ in range(2):
            reports[name]["directory_bytes"] = directory_bytes(out_dir)
            (out_dir / "training_report.json").write_text(json.dumps(reports[name], indent=1))
            write_card(out_dir, ModelSpec(**reports[name]["spec"]), model, reports[name])
    log.info("done in %.1f min", (time.perf_counter() - all_started) / 60)


if __name__ == "__main__":
    main()
