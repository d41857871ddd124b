"""The course corpus: the Python standard library's source, split by whole file.

`models/train.py` trains the course models on the train split and reports their held-out
loss on the held-out split; `llmopt.quality` measures perplexity on the same held-out
split (chapter 7: what quantization costs). Both read the split from here, so the text
a chapter calls "held out" is exactly the text the models never saw.

Another Python version has another standard library, hence another corpus: the model
card (`models/course-lm/README.md`) records the corpus's SHA-256.
"""

from __future__ import annotations

import hashlib
import platform
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

HELDOUT_EVERY = 20  # file i (in sorted order) is held out when i % HELDOUT_EVERY == 0
# Tests, vendored third-party code, the IDE, documentation text and codec tables: they
# are not the "ordinary library code" the models should learn, and the tables would
# spend BPE merges on one-off strings.
EXCLUDED_DIRS = {"site-packages", "test", "tests", "idlelib", "lib2to3", "pydoc_data",
                 "encodings", "__pycache__"}
CONTEXT = 512  # the course models' context, and the held-out evaluation's window


@dataclass
class Corpus:
    root: str
    train_files: list[str]  # paths relative to root, sorted
    heldout_files: list[str]
    train_texts: list[str]
    heldout_texts: list[str]

    def summary(self) -> dict:
        def n_bytes(texts: list[str]) -> int:
            return sum(len(t.encode("utf-8")) for t in texts)
        digest = hashlib.sha256()
        for name, text in zip(self.train_files + self.heldout_files,
                              self.train_texts + self.heldout_texts):
            digest.update(name.encode() + b"\0" + text.encode("utf-8") + b"\0")
        return {"root": self.root, "python": platform.python_version(),
                "train_files": len(self.train_files), "heldout_files": len(self.heldout_files),
                "train_bytes": n_bytes(self.train_texts),
                "heldout_bytes": n_bytes(self.heldout_texts),
                "sha256": digest.hexdigest()}


def build_corpus(root: Path | None = None) -> Corpus:
    """The standard library's source, split into train and held-out by whole file."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.py")
                   if not EXCLUDED_DIRS & set(p.relative_to(root).parts[:-1])
                   and not p.name.startswith("_sysconfigdata"))
    corpus = Corpus(str(root), [], [], [], [])
    for index, name in enumerate(paths):
        try:
            text = (root / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:  # a few legacy files are not UTF-8; skip them
            continue
        if index % HELDOUT_EVERY == 0:
            corpus.heldout_files.append(name)
            corpus.heldout_texts.append(text)
        else:
            corpus.train_files.append(name)
            corpus.train_texts.append(text)
    return corpus


def encode_documents(tokenizer, texts: list[str]) -> torch.Tensor:
    """One token stream: <|bos|> file <|eos|> <|bos|> file <|eos|> ..."""
    encoded = tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
    stream = [token for ids in encoded for token in ids + [tokenizer.eos_token_id]]
    return torch.tensor(stream, dtype=torch.long)


def heldout_windows(tokens: torch.Tensor, window: int = CONTEXT) -> torch.Tensor:
    """Non-overlapping `window`-token windows of a token stream (the tail is dropped)."""
    n = len(tokens) // window
    return tokens[: n * window].view(n, window)  # (N, T)
