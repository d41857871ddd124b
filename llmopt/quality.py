"""What a change to the weights costs in quality: held-out perplexity of the course model.

    from llmopt.quality import heldout_tokens, calibration_tokens, perplexity, kl_divergence
    ppl = perplexity(engine, heldout_tokens(8192))          # lower is better
    kl = kl_divergence(quantized, engine, heldout_tokens(8192))  # nats/token, 0 = identical
    calibration = calibration_tokens(4096)                  # (16, 256) windows, train split

Chapter 7 quantizes the course model's weights and asks what that costs. The answer is a
perplexity, exp(mean next-token cross-entropy), on text the model never saw: the
held-out files of the course corpus (`llmopt.corpus`, the split `models/train.py` used).
Methods that look at data (AWQ, GPTQ, QAT) calibrate on the *train* split only; tuning
on the text one then scores on would flatter them.

Both token sources are deterministic: the same interpreter (same standard library) and
the same tokenizer give the same tokens, so a perplexity is reproducible to the last bit
on one machine.
"""

from __future__ import annotations

import functools
import math
import random

import torch
from torch import Tensor

from llmopt.corpus import build_corpus, encode_documents

TOKENIZER = "course-lm"  # the two course models share one tokenizer


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from llmopt.models import load_tokenizer  # transformers: imported only when needed
    return load_tokenizer(TOKENIZER)


@functools.lru_cache(maxsize=1)
def _corpus():
    return build_corpus()


@functools.lru_cache(maxsize=1)
def _heldout_stream() -> Tensor:
    return encode_documents(_tokenizer(), _corpus().heldout_texts)  # (N,) ~96k tokens


def heldout_tokens(max_tokens: int | None = None) -> Tensor:
    """The held-out split as one token stream, (N,) long: <|bos|> file <|eos|> ...

    `max_tokens` keeps its first tokens (a quick measurement); None keeps all (~96k).
    """
    stream = _heldout_stream()
    if max_tokens is not None:
        if max_tokens < 2:
            raise ValueError(f"max_tokens must be at least 2 (a prediction needs a context), "
                             f"got {max_tokens}")
        stream = stream[:max_tokens]
    return stream.clone()  # the caller may write into it; the cache stays intact


def calibration_tokens(n_tokens: int, window: int = 256, seed: int = 0) -> Tensor:
    """Calibration windows from the TRAIN split: (ceil(n_tokens / window), window) long.

    Files are taken in a seeded random order (not alphabetical, which would calibrate on
    the `__future__`-and-`_abc` corner of the library) and encoded until there are enough
    tokens. Never held-out text.
    """
    if n_tokens < 1 or window < 2:
        raise ValueError(f"need n_tokens >= 1 and window >= 2, got {n_tokens}, {window}")
    n_windows = math.ceil(n_tokens / window)
    corpus = _corpus()
    order = list(range(len(corpus.train_texts)))
    random.Random(seed).shuffle(order)
    pieces, have = [], 0
    for index in order:
        piece = encode_documents(_tokenizer(), [corpus.train_texts[index]])
        pieces.append(piece)
        have += len(piece)
        if have >= n_windows * window:
            break
    else:
        raise ValueError(f"the train split holds {have} tokens, fewer than {n_windows * window}")
    return torch.cat(pieces)[: n_windows * window].view(n_windows, window)  # (n, window)


def _windows(tokens: Tensor, window: int) -> Tensor:
    """A stream (N,) cut into non-overlapping windows (n, T), or windows (n, T) as given."""
    if tokens.dim() == 1:
        window = min(window, len(tokens))
        n = len(tokens) // window
        tokens = tokens[: n * window].view(n, window)  # (n, T)
    if tokens.dim() != 2 or tokens.shape[1] < 2:
        raise ValueError(f"expected a token stream (N,) or windows (n, T >= 2), "
                         f"got shape {tuple(tokens.shape)}")
    return tokens


def _batches(engines, tokens: Tensor, batch_size: int):
    """(batch, logits of each engine) over the windows, each window scored from scratch."""
    device = engines[0].weights.embed_tokens.device
    tokens = tokens.to(device)
    positions = torch.arange(tokens.shape[1], device=device).expand(tokens.shape)  # (n, T)
    for start in range(0, len(tokens), batch_size):
        batch = tokens[start:start + batch_size]  # (b, T)
        yield batch, [engine.forward(batch, positions[:len(batch)]).float()  # (b, T, V)
                      for engine in engines]


@torch.inference_mode()
def kl_divergence(engine, reference, tokens: Tensor, window: int = 256,
                  batch_size: int = 8) -> float:
    """Mean KL(reference || engine) of the next-token distributions, in nats per token.

    Perplexity moves little when a robust model is quantized (the course model loses a
    fraction of a percent at INT4 g128), and its changes mix errors that cancel. The KL
    divergence from the full-precision model's own predictions counts every change of
    every predicted distribution and is zero only for identical outputs: the more
    sensitive yardstick for comparing quantizers on a small model. Same windows as
    `perplexity`.
    """
    tokens = _windows(tokens, window)
    total, count = 0.0, 0
    for batch, (logits, reference_logits) in _batches((engine, reference), tokens, batch_size):
        log_p = torch.log_softmax(reference_logits[:, :-1], dim=-1)  # (b, T-1, V)
        log_q = torch.log_softmax(logits[:, :-1], dim=-1)
        total += (log_p.exp() * (log_p - log_q)).sum().item()
        count += batch[:, 1:].numel()
    return total / count


@torch.inference_mode()
def perplexity(engine, tokens: Tensor, window: int = 256, batch_size: int = 8) -> float:
    """exp(mean next-token cross-entropy) of `engine` on `tokens`, through `Engine.forward`.

    tokens: a stream (N,), cut into non-overlapping `window`-token windows (the tail that
    does not fill a window is dropped; a stream shorter than one window is one window),
    or windows already cut, (n, T). Each window is scored from scratch: its first token
    has no context and is not predicted, so n * (T - 1) predictions are averaged.
    """
    tokens = _windows(tokens, window)
    total_loss, total_count = 0.0, 0
    for batch, (logits,) in _batches((engine,), tokens, batch_size):
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
            reduction="sum")
        total_loss += loss.item()
        total_count += batch[:, 1:].numel()
    return math.exp(total_loss / total_count)
