"""What the chapter-8 suites share: the course models in the judge and in a worker,
hidden prompts, the judge's greedy replay of a chain, and the shape check of a run."""
import functools

import torch


@functools.lru_cache(maxsize=2)
def judge_engine(name: str):
    from llmopt.engine import Engine, LlamaWeights

    return Engine(LlamaWeights.from_checkpoint(name))  # no EOS: exactly the tokens asked for


def worker_engine(side, name: str, silent_layers: int = 0):
    weights = side.library("llmopt.engine:LlamaWeights").from_checkpoint(name)
    if silent_layers:
        weights = weights.with_silent_layers(silent_layers)
    return side.library("llmopt.engine:Engine")(weights)


def prompts(n: int, length: int, seed: int) -> list[torch.Tensor]:
    """Held-out windows at seeded offsets, without special tokens: (1, length) each."""
    from llmopt.quality import heldout_tokens

    stream, gen, found = heldout_tokens(), torch.Generator().manual_seed(seed), []
    while len(found) < n:
        start = int(torch.randint(0, len(stream) - length, (1,), generator=gen))
        piece = stream[start:start + length]
        if bool((piece > 2).all()):
            found.append(piece[None].clone())
    return found


def judge_replay(target, draft, prompt: torch.Tensor, new_tokens: int, gamma: int):
    """The target's greedy tokens and the accepted count of every cycle of the greedy chain."""
    T = prompt.shape[1]
    with torch.inference_mode():
        want = target.generate(prompt, None, new_tokens + gamma + 1)[0].tolist()
        position, accepted = T, []
        while position - T < new_tokens:
            proposal = draft.generate(torch.tensor([want[:position]]), None, gamma)[0, position:].tolist()
            k = 0
            while k < gamma and proposal[k] == want[position + k]:
                k += 1
            accepted.append(k)
            position += k + 1
    return want[:T + new_tokens], accepted


def checked_run(result, prompt, new_tokens, what):
    assert isinstance(result, tuple) and len(result) == 2, f"{what}: return (tokens, stats)"
    tokens, stats = result
    shape = (1, prompt.shape[1] + new_tokens)
    assert isinstance(tokens, torch.Tensor) and tuple(tokens.shape) == shape, (
        f"{what}: tokens must be a tensor of shape {shape}, got {tokens!r:.80}")
    assert isinstance(stats, dict) and isinstance(stats.get("accepted"), list), (
        f'{what}: stats must be a dict with "accepted": a list of per-cycle counts')
    return tokens[0].tolist(), stats["accepted"]


def head_chain_replay(head, want: list[int], features: torch.Tensor, T: int, new_tokens: int, gamma: int) -> list[int]:
    """The judge's own EAGLE chain for a draft head, no caches: the features of the
    target's greedy sequence `want` (true ones up to the verified position, the head's
    own predictions after it); the accepted drafts of each cycle."""
    position, accepted = T, []
    while position - T < new_tokens:
        tokens, feats, drafts = want[1:position], features[:, :position - 1], []
        for _ in range(gamma):
            logits, predicted = head(torch.tensor([tokens]), feats, torch.arange(len(tokens))[None], None,
                                     torch.tensor([len(tokens) - 1]))
            drafts.append(int(logits[0, -1].argmax()))
            tokens = tokens + drafts[-1:]
            feats = torch.cat([feats, predicted[:, -1:]], dim=1)
        n = 0
        while n < gamma and drafts[n] == want[position + n]:
            n += 1
        accepted.append(n)
        position += n + 1
    return accepted
