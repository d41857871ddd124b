# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
#   llmcourse:
#     chapter: ch08_speculative_decoding
# ---

# %% [markdown]
# # Chapter 8 · Speculative Decoding: from Theory to EAGLE-3
# ## 第8章 投机采样（原理→Eagle 3）
#
# At batch 1 a decode step reads every weight of the model to produce one token. A
# cheap drafter can guess the next few tokens; the big model then checks all of them in
# one forward pass, which reads the weights once, and keeps the longest prefix it agrees
# with. When the guesses are good and checking several tokens costs about as much as
# producing one, several tokens come out of each pass of the big model. The rule that
# decides which guesses to keep is what makes this *exact*: the output follows the big
# model's distribution, token for token, whatever the drafter proposes.
#
# This chapter builds that rule, then speculative decoding on the course engine with the
# course's draft model, and a cost model that says, from measurements, when speculation
# pays and with how many drafted tokens. It measures both sides honestly: on this
# machine's CPU the answer is "not with this drafter", and the cost model says why.
#
# **Learning goals · 学习目标**
#
# 1. Write the verification rule of speculative sampling (accept with probability
#    $\min(1, p/q)$, resample from the residual, a bonus token) and check statistically
#    that its output follows the target's distribution; greedy decoding is its $T \to 0$
#    case.
# 2. Run speculative decoding on the course engine: KV caches for both models that roll
#    back rejected tokens, greedy output identical to the target's own.
# 3. Model its speed: expected tokens per target pass from the acceptance rate, the best
#    draft length from measured costs, and the acceptance rate fitted from a run.
# 4. Say where the gain goes: why a GPU at batch 1 profits, why a CPU and a large batch
#    do not, and what EAGLE's feature-level drafters change.
# 5. Train draft heads on the target's own features: EAGLE-1 (the last layer, feature
#    regression and tokens) and EAGLE-3 (low, middle and high layers fused, tokens only,
#    trained on its own predictions by "training-time test"), both drafting through one
#    loop, and compare every drafter on the same prompts in one table.
#
# **Why it matters in money.** At batch 1 a GPU's time per token is set by the bytes of
# weights it reads, so tokens per forward pass is tokens per dollar. EAGLE-3 takes
# SGLang's batch-1 decoding of Llama-3.1-8B on one H100 from 158.34 to 373.25 tokens/s
# (2.36x) with identical outputs at temperature 0; at batch 64 the same drafter adds only
# 1.38x to throughput [@li2025-eagle3]. Section 7 turns both into cost per million tokens.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false}
import math
import statistics
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

import course_config
from llmopt.engine import NO_TOKEN, Engine, KVView, LayerWeights, LlamaWeights
from llmopt.quality import calibration_tokens, heldout_tokens

SMALL = course_config.SMALL_WORKLOAD  # True under `make test`: shorter measurements
_ = torch.manual_seed(0)  # seed the demos; `_ =` keeps the Generator out of the output


def course_engine(name="course-lm", silent_layers=0):
    """A course model as an engine that never stops at EOS (every run decodes exactly the
    tokens asked for). `silent_layers`: see LlamaWeights.with_silent_layers."""
    return Engine(LlamaWeights.from_checkpoint(name).with_silent_layers(silent_layers))


def held_out_prompts(n, length=32):
    """`n` prompts of `length` tokens from the held-out split, evenly spaced, none holding
    a special token (<|bos|> 0, <|eos|> 1, <|pad|> 2), as (1, length) tensors."""
    stream = heldout_tokens()
    prompts, step = [], len(stream) // (n + 1)
    for start in range(0, len(stream) - length, 97):
        window = stream[start:start + length]
        if start >= len(prompts) * step and bool((window > 2).all()):
            prompts.append(window[None].clone())
            if len(prompts) == n:
                break
    return prompts


target = course_engine("course-lm")  # 6 layers, d = 256: the model we want the tokens of
draft = course_engine("course-lm-draft")  # 3 layers, d = 128, same tokenizer: the drafter

# %% [markdown]
# ## 1. Speculative sampling is exact
# ### 1. 投机采样为什么是精确的
#
# Let $q$ be the drafter's distribution over the vocabulary at some position and $p$ the
# target's. The drafter samples a token $x \sim q$. The verifier **accepts** it with
# probability $\min(1, p(x)/q(x))$; if it rejects, it samples a replacement from the
# **residual** $\mathrm{norm}(\max(0, p - q))$ and stops. Then for every token $y$
#
# $$P(\text{output} = y) = q(y)\min\!\left(1, \tfrac{p(y)}{q(y)}\right)
#   + \Big(\textstyle\sum_x \max(0, q(x) - p(x))\Big)\,\frac{\max(0, p(y) - q(y))}{\sum_z \max(0, p(z) - q(z))}
#   = \min(p(y), q(y)) + \max(0, p(y) - q(y)) = p(y),$$
#
# because the rejection mass $\sum_x \max(0, q - p)$ equals the residual's mass
# $\sum_z \max(0, p - q)$ (both distributions sum to one) [@leviathan2023-speculative]
# [@chen2023-speculative-sampling]. The output follows $p$ exactly, whatever $q$ is; a
# good drafter only makes acceptance more likely. A draft is kept with probability
# $\sum_x \min(p(x), q(x))$, and no exact rule keeps more: an accepted draft $x$ is an
# output, so it is kept with probability at most $\min(p(x), q(x))$. (Sampling $y \sim p$
# and keeping the draft only when $y = x$ is exact too, and keeps it with probability
# $\sum_x p(x) q(x)$, far less.)
#
# With $g$ drafted tokens $x_1 \ldots x_g$, the target computes in **one** forward pass
# its distributions $p_1 \ldots p_{g+1}$ at the $g + 1$ positions that follow the
# context (position $i$ sees the context and $x_1 \ldots x_{i-1}$). The verifier walks
# the drafts in order and stops at the first rejection, replacing that token; if all $g$
# are accepted it samples one **bonus** token from $p_{g+1}$, which the pass computed
# anyway. Every cycle therefore yields between 1 and $g + 1$ tokens.
#
# **Greedy decoding is the $T \to 0$ case.** As the temperature goes to 0, softmax$(z/T)$
# becomes one-hot on the argmax. With one-hot $p$ and $q$, $p(x)/q(x)$ is 1 when both
# argmaxes agree and 0 otherwise, and the residual is $p$'s one-hot: the rule accepts a
# draft exactly when it equals the target's greedy token and otherwise emits that token.
# One function serves both modes.
#
# **Exercise 1 · 练习1.** Write `to_probs` and `verify`. Draw every random number from
# `generator` (`torch.rand(..., generator=generator)`, `torch.multinomial(...,
# generator=generator)`), so that a run is reproducible.

# %% nbgrader={"grade": false, "grade_id": "verification_solution", "locked": false, "schema_version": 3, "solution": true}
def to_probs(logits, temperature):
    """Logits (..., V) -> probabilities (..., V) in float32 at this temperature.

    temperature > 0: softmax(logits / temperature). temperature == 0: one-hot on the
    argmax (torch.argmax's choice among ties), the limit as T -> 0. A negative
    temperature raises ValueError.
    """
    ### BEGIN SOLUTION
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    logits = logits.float()
    if temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).float()
    return torch.softmax(logits / temperature, dim=-1)
    ### END SOLUTION


def verify(p, q, draft_tokens, generator=None):
    """The verification of speculative sampling, for one sequence.

    p: (g + 1, V) the target's probabilities at the g drafted positions and one beyond;
    q: (g, V) the drafter's probabilities, from which draft_tokens (g,) long were sampled.
    Returns a 1-D long tensor of n + 1 tokens: the n accepted drafts (a prefix of
    draft_tokens), then one more: sampled from norm(max(0, p[n] - q[n])) at the first
    rejection, or from p[g] (the bonus token) when all g drafts are accepted. Draft i is
    accepted with probability min(1, p[i, x] / q[i, x]). Shapes that do not fit raise
    ValueError.
    """
    ### BEGIN SOLUTION
    g = draft_tokens.shape[0]
    if draft_tokens.dim() != 1 or q.shape[0] != g or p.shape[0] != g + 1 or p.shape[1:] != q.shape[1:]:
        raise ValueError(f"expected p (g + 1, V), q (g, V), draft_tokens (g,); got p {tuple(p.shape)}, "
                         f"q {tuple(q.shape)}, draft_tokens {tuple(draft_tokens.shape)}")
    out = []
    for i in range(g):
        x = int(draft_tokens[i])
        u = torch.rand((), generator=generator)
        if u * q[i, x] < p[i, x]:  # accepted with probability min(1, p / q); never when p = 0
            out.append(x)
            continue
        residual = (p[i] - q[i]).clamp_min(0)
        total = residual.sum()
        weights = residual / total if total > 0 else p[i]  # total = 0 only through rounding
        out.append(int(torch.multinomial(weights, 1, generator=generator)))
        return torch.tensor(out, dtype=torch.long)
    out.append(int(torch.multinomial(p[g], 1, generator=generator)))  # all accepted: a bonus token
    return torch.tensor(out, dtype=torch.long)
    ### END SOLUTION


# %% [markdown]
# The check below runs the rule many times on a small vocabulary, where $q$ is far from
# $p$, and compares the frequency of the first output token with $p_1$. The statistic is
# Pearson's $\chi^2$: for a correct rule it follows a $\chi^2$ distribution with $V - 1$
# degrees of freedom, so a value above the 99.99th percentile (25.7 for $V = 6$) means the
# rule is wrong, at the cost of one false alarm in ten thousand seeds. The hidden tests
# use more samples, more positions and other distributions.

# %% nbgrader={"grade": true, "grade_id": "verification", "locked": true, "points": 8, "schema_version": 3, "solution": false}
_V = 6
_p = torch.tensor([[0.05, 0.40, 0.05, 0.30, 0.10, 0.10], [0.2, 0.2, 0.2, 0.2, 0.1, 0.1]])
_q = torch.tensor([[0.50, 0.05, 0.20, 0.05, 0.10, 0.10]])
_gen = torch.Generator().manual_seed(8)
_n = 600 if SMALL else 4000
_counts = torch.zeros(_V)
for _ in range(_n):
    _x = torch.multinomial(_q[0], 1, generator=_gen)
    _out = verify(_p, _q, _x, _gen)
    assert _out.dtype == torch.long and _out.dim() == 1 and 1 <= len(_out) <= 2, \
        "verify returns the accepted drafts and one more token: 1-D long, 1 to g + 1 tokens"
    assert len(_out) == 1 or int(_out[0]) == int(_x[0]), "an accepted token is the draft itself"
    _counts[int(_out[0])] += 1
_chi2 = float(((_counts - _n * _p[0]) ** 2 / (_n * _p[0])).sum())
print(f"first token: frequencies {(_counts / _n).tolist()}, target p {_p[0].tolist()}, chi2 = {_chi2:.1f}")
assert _chi2 < 25.7, "the first output token does not follow p: accept with min(1, p/q), resample from max(0, p - q)"
_greedy = verify(to_probs(torch.tensor([[0.0, 3, 1], [5, 0, 0]]), 0), to_probs(torch.tensor([[0.0, 3, 2]]), 0),
                 torch.tensor([1]), _gen)
assert _greedy.tolist() == [1, 0], "greedy: the draft equals the target's argmax, so it is kept, then the bonus"
_greedy = verify(to_probs(torch.tensor([[4.0, 3, 1], [5, 0, 0]]), 0), to_probs(torch.tensor([[0.0, 3, 2]]), 0),
                 torch.tensor([1]), _gen)
assert _greedy.tolist() == [0], "greedy: a draft that is not the target's argmax is replaced by the argmax"
assert torch.allclose(to_probs(torch.tensor([1.0, 2.0]), 1.0).sum(), torch.tensor(1.0))
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch08_speculative_decoding/verification")
### END HIDDEN TESTS

# %% [markdown]
# ### Pitfall: accepting by argmax match at $T > 0$ · 误区：采样时按argmax匹配接受
#
# A tempting shortcut keeps a draft when it is the target's most likely token. At
# temperature 0 that is the rule above; at $T > 0$ it is not, and the output no longer
# follows $p$: tokens the drafter likes and the target merely tolerates are thrown away,
# and the replacement is always the target's argmax, so the output is more deterministic
# than the target. The cell measures the total variation distance
# $\tfrac12 \sum_y |\hat P(y) - p(y)|$ of each rule's first output token from $p$.

# %%
def verify_by_argmax(p, q, draft_tokens, generator=None):  # the pitfall, for comparison
    best, g = p.argmax(dim=-1).tolist(), len(draft_tokens)
    kept = next((i for i in range(g) if int(draft_tokens[i]) != best[i]), g)  # drafts equal to the argmax
    last = best[kept] if kept < g else int(torch.multinomial(p[g], 1, generator=generator))
    return torch.tensor(draft_tokens.tolist()[:kept] + [last])


_gen = torch.Generator().manual_seed(81)
_bars = {"target p": _p[0], "drafter q": _q[0]}
for _name, _rule in (("min(1, p/q) + residual", verify), ("argmax match", verify_by_argmax)):
    _counts = torch.zeros(_V)
    for _ in range(_n):
        _x = torch.multinomial(_q[0], 1, generator=_gen)
        _counts[int(_rule(_p, _q, _x, _gen)[0])] += 1
    _bars[_name] = _counts / _n
    print(f"{_name:24s} first-token TV distance from p: {0.5 * float((_counts / _n - _p[0]).abs().sum()):.3f}")
plt.figure(figsize=(7, 3))
for _i, (_name, _freq) in enumerate(_bars.items()):
    plt.bar(torch.arange(_V) + 0.2 * _i - 0.3, _freq, width=0.2, label=_name)
plt.xlabel("token")
plt.ylabel("probability / frequency")
plt.title("first output token: the exact rule follows p, the argmax shortcut does not")
plt.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Speculative decoding on the engine
# ### 2. 在引擎上实现投机解码
#
# Both models keep a KV cache. A cycle of speculative decoding, for a sequence whose
# last token is $t$:
#
# 1. **Draft.** The drafter decodes $g$ tokens after $t$, one at a time, with its cache,
#    sampling each from its $q$ (greedy at $T = 0$).
# 2. **Verify.** The target runs **one** forward pass over $[t, x_1, \ldots, x_g]$ with its
#    cache: $g + 1$ new tokens, $g + 1$ rows of logits, the $p_1 \ldots p_{g+1}$ of
#    section 1. (The first cycle also prefills the prompt in that same pass.)
# 3. **Accept** with `verify`: $n$ drafts and one more token join the sequence.
# 4. **Roll back.** Both caches now hold keys and values of drafts that were rejected.
#    They must forget them: the next cycle's queries sit at the positions those drafts
#    held, and would attend to them.
#
# The cache below appends: slot $i$ holds the $i$-th token it was given, whatever its
# position. That is the layout of every real engine's cache for a running sequence, and
# it is why rollback is not optional: a rejected draft's key stays visible (its position
# is below the next query's) until it is forgotten. `truncate(n)` forgets everything
# from slot $n$ on; nothing needs erasing, the next `update` writes over it.
#
# **Exercise 2 · 练习2.** Write `RollbackKVCache` (the engine's `KVCache` seam for one
# sequence, plus `truncate`) and `speculative_generate`. Keep this invariant: at the start
# of a cycle the target's cache holds every token of the sequence but the last; the
# drafter's holds a prefix of that (it never saw the last token of a fully accepted
# cycle's drafts), and it is fed what it lacks before drafting.

# %% nbgrader={"grade": false, "grade_id": "speculative_decoding_solution", "locked": false, "schema_version": 3, "solution": true}
class RollbackKVCache:
    """A contiguous, append-only KV cache for ONE sequence (batch 1) that can forget its tail.

    update(layer, keys, values, positions): keys and values (1, n_kv_heads, T, head_dim)
    go to the next T free slots of that layer, positions (1, T) with them; returns the
    layer's KVView of every slot filled so far (views, not copies). Writing past max_len
    raises ValueError. `length`: the number of tokens held (after a forward pass, every
    layer holds the same). truncate(n): forget every slot from n on (0 <= n <= length,
    else ValueError).
    """

    def __init__(self, n_layers, n_kv_heads, head_dim, max_len, dtype=torch.float32):
        ### BEGIN SOLUTION
        self.keys = torch.zeros(n_layers, 1, n_kv_heads, max_len, head_dim, dtype=dtype)
        self.values = torch.zeros_like(self.keys)
        self.positions = torch.full((1, max_len), NO_TOKEN)
        self.lengths = [0] * n_layers
        self.max_len = max_len
        ### END SOLUTION

    @classmethod
    def for_engine(cls, engine, max_len):
        w = engine.weights
        return cls(len(w.layers), w.n_kv_heads, w.head_dim, max_len, w.embed_tokens.dtype)

    @property
    def length(self):
        ### BEGIN SOLUTION
        return self.lengths[0]
        ### END SOLUTION

    def update(self, layer, keys, values, positions):
        ### BEGIN SOLUTION
        start = self.lengths[layer]
        end = start + keys.shape[2]
        if end > self.max_len:
            raise ValueError(f"the cache holds {self.max_len} tokens; {end} were asked for")
        self.keys[layer, :, :, start:end] = keys
        self.values[layer, :, :, start:end] = values
        self.positions[:, start:end] = positions  # the same for every layer
        self.lengths[layer] = end
        return KVView(self.keys[layer, :, :, :end], self.values[layer, :, :, :end], self.positions[:, :end])
        ### END SOLUTION

    def truncate(self, length):
        ### BEGIN SOLUTION
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} tokens to {length}")
        self.lengths = [min(held, length) for held in self.lengths]
        ### END SOLUTION


@torch.inference_mode()
def speculative_generate(target, draft, input_ids, max_new_tokens, gamma, temperature=0.0, generator=None):
    """Speculative decoding of one prompt, input_ids (1, T), with `gamma` drafted tokens a cycle.

    Returns (tokens, stats): tokens (1, T + max_new_tokens), the prompt and exactly
    max_new_tokens new tokens (EOS is not special; the last cycle's extra tokens are
    cut); stats = {"accepted": [n for each cycle]}, the number of drafts accepted in each
    cycle, in order. At temperature 0 the tokens equal the target's greedy decoding.
    """
    ### BEGIN SOLUTION
    if input_ids.dim() != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"one sequence at a time: input_ids (1, T), got {tuple(input_ids.shape)}")
    if gamma < 1:
        raise ValueError(f"gamma must be >= 1, got {gamma}")
    T = input_ids.shape[1]
    max_len = T + max_new_tokens + gamma + 1
    target_cache = RollbackKVCache.for_engine(target, max_len)
    draft_cache = RollbackKVCache.for_engine(draft, max_len)
    seq = input_ids[0].tolist()
    accepted = []
    last = torch.tensor([-1])

    def forward(engine, cache, tokens, logits_at):
        positions = torch.arange(cache.length, cache.length + len(tokens))[None]  # batch 1: position = slot
        return engine.forward(torch.tensor([tokens]), positions, cache, logits_at=logits_at)[0]

    while len(seq) - T < max_new_tokens:
        length = len(seq)
        drafts, q_rows = [], []
        feed = seq[draft_cache.length:]  # what the drafter has not seen, ending with the last token
        for _ in range(gamma):
            q = to_probs(forward(draft, draft_cache, feed, last)[-1], temperature)
            x = int(q.argmax()) if temperature == 0 else int(torch.multinomial(q, 1, generator=generator))
            drafts.append(x)
            q_rows.append(q)
            feed = [x]
        feed = seq[target_cache.length:] + drafts  # the last token, then the drafts
        rows = torch.arange(len(feed) - gamma - 1, len(feed))
        p = to_probs(forward(target, target_cache, feed, rows), temperature)  # (gamma + 1, V)
        out = verify(p, torch.stack(q_rows), torch.tensor(drafts), generator).tolist()
        accepted.append(len(out) - 1)
        seq += out
        kept = length + len(out) - 1  # every token but the new last one
        target_cache.truncate(kept)
        draft_cache.truncate(min(draft_cache.length, kept))
    return torch.tensor([seq[:T + max_new_tokens]]), {"accepted": accepted}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "speculative_decoding", "locked": true, "points": 8, "schema_version": 3, "solution": false}
_cache = RollbackKVCache(2, 1, 4, 8)
_k = torch.randn(1, 1, 3, 4)
for _layer in (0, 1):
    _view = _cache.update(_layer, _k, -_k, torch.tensor([[0, 1, 2]]))
assert _cache.length == 3 and torch.equal(_view.keys, _k) and _view.positions.tolist() == [[0, 1, 2]]
_cache.truncate(1)
for _layer in (0, 1):
    _view = _cache.update(_layer, _k[:, :, :1] + 1, _k[:, :, :1], torch.tensor([[1]]))
assert _cache.length == 2 and _view.positions.tolist() == [[0, 1]] and torch.equal(_view.keys[:, :, 1], _k[:, :, 0] + 1), \
    "after truncate(1), the next token goes to slot 1 and the view holds 2 slots"
_prompt = held_out_prompts(1)[0]
_want = target.generate(_prompt, None, 24, kv_cache=RollbackKVCache.for_engine(target, 64))
for _gamma in (1, 4):
    _got, _stats = speculative_generate(target, draft, _prompt, 24, _gamma)
    assert _got.tolist() == _want.tolist(), f"gamma = {_gamma}: greedy speculative tokens differ from the target's greedy"
    assert len(_stats["accepted"]) < 24 and sum(n + 1 for n in _stats["accepted"]) >= 24, \
        "each cycle yields its accepted drafts plus one token"
print(f"gamma = 4: {len(_stats['accepted'])} target passes for 24 tokens, accepted per cycle {_stats['accepted']}")
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch08_speculative_decoding/speculative_decoding")
### END HIDDEN TESTS

# %% [markdown]
# ### Pitfall: no rollback · 误区：不回滚KV缓存
#
# Forget step 4 and the rejected drafts' keys stay in both caches. The next cycle's
# tokens take the positions those drafts held, and attend to both the draft and the
# token that replaced it. The tokens drift from the target's greedy output within a few
# cycles, silently: no shape is wrong.

# %%
class NoRollback(RollbackKVCache):  # the pitfall: the loop forgets the rejected drafts, the cache does not
    def __init__(self, n_layers, n_kv_heads, head_dim, max_len, dtype=torch.float32):
        super().__init__(n_layers, n_kv_heads, head_dim, 4 * max_len, dtype)  # room for every rejected draft
        self.held = 0  # tokens of the sequence, as the decoding loop counts them

    @property
    def length(self):
        return self.held

    def update(self, layer, keys, values, positions):
        self.held += keys.shape[2] if layer == 0 else 0
        return super().update(layer, keys, values, positions)

    def truncate(self, length):
        self.held = length  # the count goes back; the stored keys and values stay visible


_saved, RollbackKVCache = RollbackKVCache, NoRollback  # speculative_generate builds its caches by this name
try:
    _wrong = speculative_generate(target, draft, _prompt, 24, 4)[0]
finally:
    RollbackKVCache = _saved
_first = next((i for i in range(_want.shape[1]) if _wrong[0, i] != _want[0, i]), None)
print(f"without rollback, {int((_wrong != _want).sum())} of 24 new tokens differ from greedy; "
      f"the first at new token {None if _first is None else _first - _prompt.shape[1]}")

# %% [markdown]
# ## 3. What a cycle costs, and when speculation pays
# ### 3. 一个周期的代价，以及投机何时划算
#
# Let each drafted token be accepted with probability $a$, independently (a model, not a
# fact: acceptance depends on the text). A cycle stops at the first rejection, so it
# yields $k + 1$ tokens when the first $k$ drafts are accepted, and the expected number
# of tokens per target pass is
#
# $$\tau(a, g) = \sum_{k=0}^{g} a^k = \frac{1 - a^{g+1}}{1 - a}$$
#
# [@leviathan2023-speculative]: at most $g + 1$, and $1/(1 - a)$ however long the draft.
#
# Measure costs in units of one plain decoding step of the target. A draft step costs
# $c$, the verifying pass over $g + 1$ tokens costs $v(g + 1)$, so a cycle costs
# $g c + v(g + 1)$ and the speed-up over plain decoding is
#
# $$S = \frac{\tau(a, g)}{g\,c + v(g + 1)} .$$
#
# On a GPU at batch 1, where a step waits for the weights to arrive, $v(g + 1) \approx 1$
# for small $g$: the same bytes serve $g + 1$ tokens. Leviathan et al. assume that, and
# with $c = 0.05$, $a = 0.8$, $g = 4$ predict $\tau = 3.36$ and $S = 2.80$
# [@leviathan2023-speculative]. The cell below measures $v$ on this machine.

# %%
def forward_costs(passes, context=48, repeats=None):
    """Median seconds of one forward pass for each (engine, k) in `passes`: k new tokens
    after `context` cached ones. The passes take turns, round after round, so that a burst
    of other work on the machine slows all of them alike."""
    repeats = repeats or (5 if SMALL else 25)
    ids = held_out_prompts(1, context + max(k for _, k in passes))[0]
    caches = [RollbackKVCache.for_engine(engine, context + k) for engine, k in passes]
    times = [[] for _ in passes]
    with torch.inference_mode():
        for (engine, _), cache in zip(passes, caches):
            engine.forward(ids[:, :context], torch.arange(context)[None], cache)
        for _ in range(repeats):
            for (engine, k), cache, bucket in zip(passes, caches, times):
                start = time.perf_counter()
                engine.forward(ids[:, context:context + k], torch.arange(context, context + k)[None], cache)
                bucket.append(time.perf_counter() - start)
                cache.truncate(context)
    return [statistics.median(bucket) for bucket in times]


_ks = list(range(1, 10))
*_target_s, _draft_s = forward_costs([(target, k) for k in _ks] + [(draft, 1)])
_step = _target_s[0]
FORWARD_COSTS = [0.0] + [t / _step for t in _target_s]  # FORWARD_COSTS[k]: a pass over k tokens, in steps
DRAFT_COST = _draft_s / _step
print(f"one target step {_step * 1e3:.2f} ms; one draft-model step costs c = {DRAFT_COST:.2f} of it")
print("target pass over k tokens, in target steps:", ", ".join(f"{k}: {FORWARD_COSTS[k]:.2f}" for k in _ks))

# %% [markdown]
# On this CPU the verifying pass is **not** flat: the matrix multiplications of a 6-layer,
# 256-wide model are limited by arithmetic at a handful of rows, not by reading weights,
# so $v(6)$ is well above 1. That, not the rule, decides the speed-up here.
#
# **Exercise 3 · 练习3.** Write the cost model: $\tau$, the speed-up, the best draft
# length for measured costs, and the acceptance rate fitted from a run's per-cycle counts.
# For the fit, a cycle that accepted $k < g$ drafts saw $k$ acceptances and one rejection
# (probability $a^k (1 - a)$), a cycle that accepted all $g$ saw $g$ acceptances and no
# rejection ($a^g$); the maximum-likelihood $a$ is the total of acceptances over the total
# of acceptances and rejections.

# %% nbgrader={"grade": false, "grade_id": "cost_model_solution", "locked": false, "schema_version": 3, "solution": true}
def expected_tokens_per_cycle(a, gamma):
    """tau(a, g) = (1 - a^(g+1)) / (1 - a): expected tokens per target pass (g + 1 at a = 1)."""
    ### BEGIN SOLUTION
    if a >= 1:
        return float(gamma + 1)
    return (1 - a ** (gamma + 1)) / (1 - a)
    ### END SOLUTION


def expected_speedup(a, gamma, draft_cost, verify_cost):
    """tau / (gamma * draft_cost + verify_cost): costs in plain target steps; verify_cost is
    the cost of the target's pass over gamma + 1 tokens."""
    ### BEGIN SOLUTION
    return expected_tokens_per_cycle(a, gamma) / (gamma * draft_cost + verify_cost)
    ### END SOLUTION


def best_gamma(a, draft_cost, forward_costs):
    """The draft length g in 1 .. len(forward_costs) - 2 with the highest expected speed-up
    (the smallest such g on a tie); forward_costs[k] is the cost of a target pass over k
    tokens, in target steps (forward_costs[1] = 1)."""
    ### BEGIN SOLUTION
    gammas = range(1, len(forward_costs) - 1)
    return max(gammas, key=lambda g: (expected_speedup(a, g, draft_cost, forward_costs[g + 1]), -g))
    ### END SOLUTION


def fit_acceptance(accepted, gamma):
    """Maximum-likelihood acceptance rate from per-cycle accepted counts (each in 0..gamma)."""
    ### BEGIN SOLUTION
    if not accepted or any(not 0 <= n <= gamma for n in accepted):
        raise ValueError(f"need per-cycle counts in 0..{gamma}, got {accepted!r:.80}")
    acceptances = sum(accepted)
    rejections = sum(1 for n in accepted if n < gamma)
    return acceptances / (acceptances + rejections)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "cost_model", "locked": true, "points": 6, "schema_version": 3, "solution": false}
assert abs(expected_tokens_per_cycle(0.8, 4) - 3.3616) < 1e-9 and expected_tokens_per_cycle(1.0, 4) == 5
assert abs(expected_speedup(0.8, 4, 0.05, 1.0) - 3.3616 / 1.2) < 1e-9, "S = tau / (g c + v)"
assert best_gamma(0.8, 0.05, [0, 1, 1, 1, 1, 1, 1, 1, 1]) == 7, "flat verification, cheap drafts: draft long"
assert best_gamma(0.8, 0.05, [0, 1, 1.1, 1.6, 2.2, 2.9, 3.6, 4.4]) < 4, "costly verification: draft short"
assert fit_acceptance([4, 4, 0, 2], 4) == 10 / 12, "10 acceptances, 2 rejections"
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch08_speculative_decoding/cost_model")
### END HIDDEN TESTS

# %% [markdown]
# ### Measured against predicted · 实测与预测
#
# Now the real run: held-out code prompts, greedy, the draft model at several draft
# lengths, each timed against plain cached decoding of the same prompt in the same loop.
# The fitted $a$ and the measured costs give a predicted $\tau$ and speed-up for each $g$.
# `timed_against_plain` is that loop; every drafter of the chapter is measured with it.

# %%
def plain_generate(engine, prompt, new_tokens):
    cache = RollbackKVCache.for_engine(engine, prompt.shape[1] + new_tokens + 1)
    return engine.generate(prompt, None, new_tokens, kv_cache=cache)


def timed_against_plain(target, generate, prompts, new_tokens):
    """Greedy speculative decoding against plain cached decoding of `target`, on each prompt
    one right after the other. generate(prompt, new_tokens) -> (tokens, stats), as
    speculative_generate returns them; its tokens must be the plain ones. Returns (taus,
    speed-up): the tokens each cycle yielded (accepted drafts + 1), every prompt's in
    order, and the median over prompts of plain time / speculative time."""
    taus, ratios = [], []
    for prompt in prompts:
        start = time.perf_counter()
        want = plain_generate(target, prompt, new_tokens)
        plain_s = time.perf_counter() - start
        start = time.perf_counter()
        got, stats = generate(prompt, new_tokens)
        ratios.append(plain_s / (time.perf_counter() - start))
        assert got.tolist() == want.tolist(), "speculative tokens differ from the target's greedy decoding"
        taus += [n + 1 for n in stats["accepted"]]
    return taus, statistics.median(ratios)


# %%
_prompts = held_out_prompts(2 if SMALL else 8)
_new = 16 if SMALL else 64
_gammas = [1, 4] if SMALL else [1, 2, 3, 4, 5, 6]
print(f"{'g':>2} {'a fitted':>9} {'tau measured':>13} {'tau predicted':>14} {'speed-up':>9} {'predicted':>10}")
_table = []
for _g in _gammas:
    _taus, _speedup = timed_against_plain(
        target, lambda p, n: speculative_generate(target, draft, p, n, _g), _prompts, _new)
    _a = fit_acceptance([t - 1 for t in _taus], _g)
    _tau = statistics.mean(_taus)
    _predicted = expected_speedup(_a, _g, DRAFT_COST, FORWARD_COSTS[_g + 1])
    _table.append((_g, _a, _tau, expected_tokens_per_cycle(_a, _g), _speedup, _predicted))
    print(f"{_g:>2} {_a:9.2f} {_tau:13.2f} {_table[-1][3]:14.2f} {_speedup:8.2f}x {_predicted:9.2f}x")

_fig, (_left, _right) = plt.subplots(1, 2, figsize=(10, 3.6))
_left.plot([r[0] for r in _table], [r[2] for r in _table], "o", label="measured")
_left.plot([r[0] for r in _table], [r[3] for r in _table], "-", label="predicted from fitted a")
_left.set(xlabel="draft length g", ylabel="tokens per target pass (tau)", title="tau")
_right.plot([r[0] for r in _table], [r[4] for r in _table], "o", label="measured")
_right.plot([r[0] for r in _table], [r[5] for r in _table], "-", label="predicted")
_right.axhline(1.0, color="gray", linewidth=0.8)
_right.set(xlabel="draft length g", ylabel="speed-up over plain decoding", title="speed-up, this CPU")
for _ax in (_left, _right):
    _ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The course's draft model agrees with the target's greedy token about half the time, and
# a draft step costs about a quarter of a target step (it is smaller, but a step of a small
# model is mostly fixed per-call costs). With the verifying pass well above one step, the
# cost model predicts a slowdown at every $g$, and the measurement agrees. (The model
# counts only forward passes; the loop's bookkeeping in Python and the drafter's pass over
# each prompt come on top, and timings on a shared machine scatter by tens of percent:
# read the table for its trend, not its second digit.) The model is also a guide to what
# would change the verdict: `best_gamma` for a cheaper drafter or a flat verifying pass,
# below.

# %%
_a_fit = _table[-1][1]  # a fitted at the longest g
for _label, _c, _costs in (("this CPU, draft model", DRAFT_COST, FORWARD_COSTS),
                           ("this CPU, a drafter 5x cheaper", DRAFT_COST / 5, FORWARD_COSTS),
                           ("flat verification (a GPU at batch 1)", DRAFT_COST, [0.0] + [1.0] * (len(FORWARD_COSTS) - 1))):
    _g = best_gamma(_a_fit, _c, _costs)
    print(f"{_label:38s} best g = {_g}, predicted speed-up {expected_speedup(_a_fit, _g, _c, _costs[_g + 1]):.2f}x "
          f"at a = {_a_fit:.2f}")

# %% [markdown]
# ## 4. The ideal drafter: how the cost ratio sets the gain
# ### 4. 理想草稿模型：代价比决定收益
#
# To see the cost model work where speculation does pay, take a target that is $m$ times
# as expensive as a drafter that always agrees with it: the course model with $m - 1$
# *silent* copies of each layer (`LlamaWeights.with_silent_layers`: the copies compute
# attention and the MLP in full and add exactly zero, so the logits are bit-identical)
# as the target, and the plain course model as the drafter. Acceptance is then 1, $\tau =
# g + 1$, and $c = 1/m$ up to fixed costs. The prediction uses the measured costs of this
# deeper target; the measurement should rise with $m$ as the prediction does.

# %%
_depths = [4] if SMALL else [1, 2, 4, 8]
_g = 4
_ideal = []
for _m in _depths:
    _deep = course_engine("course-lm", silent_layers=_m - 1)
    _unit, _verify, _draft_step = forward_costs([(_deep, 1), (_deep, _g + 1), (target, 1)])
    _c, _v = _draft_step / _unit, _verify / _unit
    _taus, _speedup = timed_against_plain(
        _deep, lambda p, n: speculative_generate(_deep, target, p, n, _g), _prompts[:3], _new)
    assert all(t == _g + 1 for t in _taus), "a drafter that is the target's twin is always accepted"
    _ideal.append((_m, _speedup, expected_speedup(1.0, _g, _c, _v)))
    print(f"target {_m}x the drafter: c = {_c:.2f}, v(5) = {_v:.2f}, speed-up measured {_speedup:.2f}x, "
          f"predicted {_ideal[-1][2]:.2f}x")
plt.figure(figsize=(5, 3.4))
plt.plot([r[0] for r in _ideal], [r[1] for r in _ideal], "o", label="measured")
plt.plot([r[0] for r in _ideal], [r[2] for r in _ideal], "-", label="cost model")
plt.axhline(1.0, color="gray", linewidth=0.8)
plt.xscale("log", base=2)
plt.xlabel("target cost / drafter cost (m)")
plt.ylabel("speed-up, g = 4, a = 1")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ### The same pair in `transformers` · 同一对模型在transformers中
#
# `transformers` implements the same idea as *assisted generation*: `generate(...,
# assistant_model=draft_model)`. At temperature 0 its tokens must equal plain greedy
# decoding, and ours; it adapts the draft length as it goes. Its timing against its own
# plain `generate` is a second, independent measurement of the same trade-off.

# %%
from transformers import GenerationConfig
from transformers.utils import logging as transformers_logging

from llmopt.models import load_model

transformers_logging.set_verbosity_error()  # its notices concern its own API, not this comparison

_target_hf, _draft_hf = load_model("course-lm"), load_model("course-lm-draft")
_config = GenerationConfig(do_sample=False, max_new_tokens=_new, min_new_tokens=_new, eos_token_id=None,
                           pad_token_id=2)  # greedy, exactly _new tokens, as ours
_ratios = []
for _prompt in _prompts[:2]:
    _kwargs = dict(generation_config=_config, attention_mask=torch.ones_like(_prompt))
    with torch.inference_mode():
        _start = time.perf_counter()
        _plain = _target_hf.generate(_prompt, **_kwargs)
        _plain_s = time.perf_counter() - _start
        _start = time.perf_counter()
        _assisted = _target_hf.generate(_prompt, assistant_model=_draft_hf, **_kwargs)
        _ratios.append(_plain_s / (time.perf_counter() - _start))
    _ours = speculative_generate(target, draft, _prompt, _new, 3)[0]
    assert _assisted.tolist() == _plain.tolist() == _ours.tolist(), "assisted, plain and ours must agree"
print(f"transformers assisted generation: tokens equal to plain greedy and to ours; "
      f"speed-up over its own generate {statistics.median(_ratios):.2f}x (median of {len(_ratios)} prompts)")

# %% [markdown]
# ## 5. Draft trees: several guesses verified in one pass
# ### 5. 草稿树：一次前向验证多条猜测
#
# A chain of $g$ drafts is lost from its first wrong token on. When the drafter is unsure,
# its second or third choice is often the target's: a **tree** keeps several candidates
# at each depth and the target checks every branch in the same pass. EAGLE-2 drafts such
# trees and grows them where the drafter is confident [@li2024-eagle2]; the same idea
# works with any drafter, here the course's draft model.
#
# The tree of this exercise, with depth $d$ and width $k$ (EAGLE-2's expansion, without
# its final re-ranking):
#
# - **depth 1**: the drafter's $k$ most likely tokens after the last token of the sequence;
# - **depth $j + 1$**: each of the $k$ nodes of depth $j$ proposes its $k$ most likely
#   children; of those $k^2$, keep the $k$ with the highest *cumulative* log-probability
#   (the sum along the path from the root), so that a likely branch grows and an unlikely
#   one stops.
#
# That is $n = d k$ nodes, numbered by depth, and within a depth by falling cumulative
# log-probability; `parents[i]` is the number of node $i$'s parent, $-1$ for a child of
# the sequence's last token. One forward pass of the target over
# $[t, x_0, \ldots, x_{n-1}]$ gives its greedy choice after $t$ and after every node.
# Two things make that pass right:
#
# - **Positions are depths.** Node $i$ at depth $j$ sits at position $L - 1 + j$ for a
#   sequence of $L$ tokens, whatever its number: siblings share a position.
# - **Each node sees the sequence and its own ancestors, itself included; nothing else.**
#   The engine's default rule (a key is visible when its position is not after the
#   query's) would let a node see its siblings and cousins, which are not in its context.
#   The attention mask of the tree must say it.
#
# **Acceptance** walks down from the root: while the target's greedy token after the
# current node is one of its children, step into that child; then add the target's token
# after the last node reached (the bonus). The output is the target's greedy decoding,
# token for token, for any tree. (Only greedy decoding here: verifying a tree at
# $T > 0$ needs the rejection rule of section 1 applied recursively over siblings, as in
# SpecInfer and EAGLE-2.)
#
# **Rollback.** The accepted nodes are scattered over the cache's slots. Real engines copy
# their keys and values down over the rejected ones; here both caches are simply cut back
# to the $L$ tokens of the sequence, and the tokens just accepted are fed again, at the
# head of the next cycle's pass. Exact, and simpler, at the price of a wider next pass.
#
# The read-only cell below turns a tree into the attention mask of one pass over the
# cache (the `visibility` argument of `Engine.forward`), from the ancestor matrix that
# you write.
#
# **Exercise 4 · 练习4.** Write `tree_attention_mask`, `draft_tree` and `tree_generate`.

# %% nbgrader={"grade": false, "grade_id": "tree_helpers", "locked": true, "schema_version": 3, "solution": false}
class TreeVisibility:
    """The attention mask of one pass over a cache that holds the first `seq_len - tail`
    tokens of the sequence. The pass feeds the sequence's last `tail` tokens (each sees
    the sequence up to itself), then the tree nodes numbered `nodes` (ascending, all
    nodes numbered below them already in the cache after the sequence, in number
    order). A node sees the whole sequence and the nodes that `ancestors[node]` marks.
    `ancestors`: (n, n) bool, from `tree_attention_mask`."""

    def __init__(self, seq_len, tail, ancestors, nodes):
        held = max(nodes) + 1 if nodes else 0  # tree nodes in the cache after this pass
        mask = torch.zeros(tail + len(nodes), seq_len + held, dtype=torch.bool)
        mask[:tail, :seq_len] = torch.ones(tail, seq_len, dtype=torch.bool).tril(seq_len - tail)
        mask[tail:, :seq_len] = True
        if nodes:
            mask[tail:, seq_len:] = ancestors[nodes][:, :held]
        self.mask = mask[None, None]  # (1, 1, queries, keys)

    def mask_for(self, key_positions):  # called by every layer of Engine.forward
        if key_positions.shape[1] != self.mask.shape[-1]:
            raise ValueError(f"the cache holds {key_positions.shape[1]} keys; this mask was built for "
                             f"{self.mask.shape[-1]}: feed the sequence, then the nodes in number order")
        return self.mask


# %% nbgrader={"grade": false, "grade_id": "tree_drafting_solution", "locked": false, "schema_version": 3, "solution": true}
def tree_attention_mask(parents):
    """(n, n) bool: [i, j] is True when node j is node i or one of its ancestors.
    parents: list of n ints, parents[i] < i (-1: a child of the sequence's last token);
    ValueError otherwise."""
    ### BEGIN SOLUTION
    mask = torch.eye(len(parents), dtype=torch.bool)
    for i, parent in enumerate(parents):
        if not -1 <= parent < i:
            raise ValueError(f"node {i}'s parent {parent} must be -1 or a node before it")
        if parent >= 0:
            mask[i] |= mask[parent]
    return mask
    ### END SOLUTION


def draft_tree(draft, cache, seq, depth, top_k):
    """The draft tree after the token list `seq` (see the text): (tokens, parents), two
    lists of depth * top_k ints, nodes by depth, within a depth by falling cumulative
    log-probability. `cache`: the drafter's RollbackKVCache, holding a prefix of `seq`;
    on return it holds exactly len(seq) tokens (the tree is forgotten)."""
    ### BEGIN SOLUTION
    L = len(seq)
    tail = seq[cache.length:]
    logits = draft.forward(torch.tensor([tail]), torch.arange(cache.length, L)[None], cache,
                           logits_at=torch.tensor([len(tail) - 1]))[0, -1]
    scores, best = F.log_softmax(logits, dim=-1).topk(top_k)
    tokens, parents, cumulative = best.tolist(), [-1] * top_k, scores.tolist()
    frontier = list(range(top_k))
    for level in range(1, depth):  # feed the nodes of depth `level`, choose those of `level + 1`
        visibility = TreeVisibility(L, 0, tree_attention_mask(parents), frontier)
        logits = draft.forward(torch.tensor([[tokens[i] for i in frontier]]),
                               torch.full((1, len(frontier)), L - 1 + level), cache, visibility=visibility)[0]
        scores, best = F.log_softmax(logits, dim=-1).topk(top_k, dim=-1)  # (k, k)
        paths = (torch.tensor([cumulative[i] for i in frontier])[:, None] + scores).flatten()
        chosen = []
        for index in paths.topk(top_k).indices.tolist():
            row, column = divmod(index, top_k)
            tokens.append(int(best[row, column]))
            parents.append(frontier[row])
            cumulative.append(float(paths[index]))
            chosen.append(len(tokens) - 1)
        frontier = chosen
    cache.truncate(L)
    return tokens, parents
    ### END SOLUTION


@torch.inference_mode()
def tree_generate(target, draft, input_ids, max_new_tokens, depth, top_k):
    """Greedy speculative decoding of input_ids (1, T) with a draft tree per cycle.
    Returns (tokens, stats) as speculative_generate does: tokens (1, T + max_new_tokens),
    equal to the target's greedy decoding; stats = {"accepted": [nodes accepted per cycle]}."""
    ### BEGIN SOLUTION
    T = input_ids.shape[1]
    max_len = T + max_new_tokens + depth * top_k + depth + 2
    target_cache = RollbackKVCache.for_engine(target, max_len)
    draft_cache = RollbackKVCache.for_engine(draft, max_len)
    seq, accepted = input_ids[0].tolist(), []
    while len(seq) - T < max_new_tokens:
        L = len(seq)
        tokens, parents = draft_tree(draft, draft_cache, seq, depth, top_k)
        ancestors = tree_attention_mask(parents)
        tail = seq[target_cache.length:]  # ends with the last token
        positions = torch.cat([torch.arange(target_cache.length, L), L - 1 + ancestors.sum(dim=1)])[None]
        rows = torch.arange(len(tail) - 1, len(tail) + len(tokens))  # after the last token, after each node
        visibility = TreeVisibility(L, len(tail), ancestors, list(range(len(tokens))))
        choice = target.forward(torch.tensor([tail + tokens]), positions, target_cache, logits_at=rows,
                                visibility=visibility)[0].argmax(dim=-1).tolist()
        node, out = -1, []
        while True:
            out.append(choice[node + 1])
            node = next((i for i, (p, x) in enumerate(zip(parents, tokens)) if p == node and x == out[-1]), None)
            if node is None:
                break
        accepted.append(len(out) - 1)
        seq += out
        target_cache.truncate(L)
        draft_cache.truncate(min(draft_cache.length, L))
    return torch.tensor([seq[:T + max_new_tokens]]), {"accepted": accepted}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "tree_drafting", "locked": true, "points": 8, "schema_version": 3, "solution": false}
_mask = tree_attention_mask([-1, -1, 0, 0, 1, 2])
assert _mask.dtype == torch.bool and _mask.shape == (6, 6)
assert _mask[2].tolist() == [True, False, True, False, False, False], "node 2 sees itself and its parent 0 only"
assert _mask[5].tolist() == [True, False, True, False, False, True], "node 5 sees 5, its parent 2 and 2's parent 0"
assert not _mask[0, 1] and not _mask[2, 3], "siblings do not see each other"
_prompt = held_out_prompts(1)[0]
_want = target.generate(_prompt, None, 24, kv_cache=RollbackKVCache.for_engine(target, 64))
_cache = RollbackKVCache.for_engine(draft, 64)
_tokens, _parents = draft_tree(draft, _cache, _prompt[0].tolist(), 3, 2)
assert len(_tokens) == len(_parents) == 6 and _parents[:2] == [-1, -1] and _cache.length == _prompt.shape[1]
for _depth, _k in ((3, 2), (2, 3), (4, 1)):
    _got, _stats = tree_generate(target, draft, _prompt, 24, _depth, _k)
    assert _got.tolist() == _want.tolist(), f"depth {_depth}, k {_k}: the tokens differ from the target's greedy"
print(f"depth 3, k 2: {len(_stats['accepted'])} target passes for 24 tokens, accepted per cycle {_stats['accepted']}")
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch08_speculative_decoding/tree_drafting")
### END HIDDEN TESTS

# %% [markdown]
# ### Pitfall: a tree mask by position · 误区：按位置构造树掩码
#
# The engine's usual rule, "see every key at a position not after yours", is the natural
# mask to reach for, and it is wrong for a tree: a node would see its siblings and the
# other branches' nodes of lower depth, tokens that are not in its context. The target's
# choices after such a node change, and so do the tokens.

# %%
def mask_by_position(parents):  # the pitfall: depth decides visibility, not ancestry
    depth = []
    for parent in parents:
        depth.append(1 if parent < 0 else depth[parent] + 1)
    depth = torch.tensor(depth)
    return depth[None, :] <= depth[:, None]


_right_mask = tree_attention_mask
tree_attention_mask = mask_by_position
try:
    _wrong, _ = tree_generate(target, draft, _prompt, 24, 3, 3)
finally:
    tree_attention_mask = _right_mask
_first = next((i for i in range(_want.shape[1]) if _wrong[0, i] != _want[0, i]), None)
print("position mask:", "same tokens as greedy (this prompt was lucky)" if _first is None
      else f"differs from greedy from new token {_first - _prompt.shape[1]} on")

# %% [markdown]
# ### Trees against chains · 树与链的对比
#
# At the same number of verified tokens $n$, a tree should accept more per pass than a
# chain when the drafter's first choice is often wrong, and it drafts in $d$ steps
# instead of $n$. Measured on held-out prompts, each timed against plain decoding right
# after it:

# %%
def tree_or_chain(depth, top_k, prompt, new_tokens):
    if top_k == 1:  # a tree of width 1 is a chain
        return speculative_generate(target, draft, prompt, new_tokens, depth)
    return tree_generate(target, draft, prompt, new_tokens, depth, top_k)


_shapes = [(4, 1), (2, 2), (6, 1), (3, 2)] if not SMALL else [(6, 1), (3, 2)]
_rows = []
for _depth, _k in _shapes:
    _taus, _speedup = timed_against_plain(target, lambda p, n: tree_or_chain(_depth, _k, p, n), _prompts, _new)
    _rows.append((_depth, _k, statistics.mean(_taus), _speedup))
print(f"{'shape':>12} {'verified':>9} {'tau':>6} {'speed-up':>9}")
for _depth, _k, _tau, _speedup in _rows:
    _shape = f"chain g={_depth}" if _k == 1 else f"tree {_depth}x{_k}"
    print(f"{_shape:>12} {_depth * _k:9d} {_tau:6.2f} {_speedup:8.2f}x")
plt.figure(figsize=(5, 3.4))
for _label, _marker, _want_k in (("chain", "o", True), ("tree", "s", False)):
    _pts = [(d * k, tau) for d, k, tau, _ in _rows if (k == 1) == _want_k]
    plt.plot([p[0] for p in _pts], [p[1] for p in _pts], _marker, label=_label, markersize=8)
plt.xlabel("tokens verified per pass (n)")
plt.ylabel("tokens per target pass (tau)")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# On the course models the tree gains a little $\tau$ at the same width (the draft model's
# second choice is the target's often enough), and drafts in fewer steps, so it is the
# faster of the two at equal width; neither beats plain decoding on this CPU, for the
# reasons of section 3. EAGLE-2 expands wider than it verifies and keeps only the most
# likely nodes of the expansion [@li2024-eagle2]. Where the verifying pass is nearly flat
# in its width (section 3's cost model with $v \approx 1$: a GPU at batch 1), width costs
# little, and the tree's extra $\tau$ becomes speed.

# %% [markdown]
# ## 6. A draft head on the target's features: EAGLE-1
# ### 6. 基于目标模型特征的草稿头：EAGLE-1
#
# The cost model says what a drafter needs: high acceptance at a small fraction of a
# target step. A separate small model spends its whole budget relearning what the
# target already computed. EAGLE drafts at the level of the target's features instead
# [@li2024-eagle]: one decoder layer takes the target's last hidden state and the
# embedding of the token just produced (concatenated, projected from $2h$ to $h$), predicts
# the next hidden state, and reads a token through the target's own, frozen LM head. It
# costs a fraction of one layer of the target, and it starts from everything the target
# knows about the context.
#
# In the course engine:
#
# - **Features.** `target.forward(..., hidden_at=(-1,))` also returns $f_t$, the residual
#   stream after the last layer, which the final norm and the LM head turn into the
#   logits of token $t + 1$.
# - **The head.** `fc` ($2h \to h$, with a bias) maps $[\mathrm{embed}(x_{t+1}); f_t]$ to the
#   input of one decoder layer shaped like the target's, which predicts $\hat f_{t+1}$; the
#   target's final norm and LM head, frozen, turn it into logits. The layer runs on the
#   engine: `LlamaWeights.with_layers([layer])` puts it between the target's embedding and
#   LM head, and `forward(None, positions, cache, inputs_embeds=..., hidden_at=(-1,))`
#   returns the logits and $\hat f_{t+1}$. Item $t$ of the head sits at position $t$.
# - **Training** (teacher forcing, as EAGLE-1): on windows of the training split, item
#   $t$ gets the true $x_{t+1}$ and $f_t$ and learns $f_{t+1}$ by regression (smooth L1)
#   and the target's greedy token after $x_{t+1}$ by cross-entropy: the head should
#   predict what the target *will say*, not the text. Loss: cross-entropy $+\ 0.1 \times$
#   smooth L1, AdamW, a short warm-up and a cosine decay.
# - **Drafting** (`eagle_generate`): for the positions the target has verified, the head
#   gets the true features; beyond them it feeds itself its own $\hat f$. Its cache keeps
#   the verified items and forgets its own guesses each cycle; the target's verifying
#   pass returns the features of the tokens it accepts (`hidden_at=(-1,)`).
# - **Given:** `feature_layers = (-1,)` and `fuse` (the identity) say which target layers
#   the head reads and how they become its feature; `eagle_generate` asks for
#   `hidden_at=head.feature_layers` and applies `head.fuse`, so that exercise 6's head,
#   which reads three layers, drafts through the same loop. `forward`'s `visibility`
#   is passed on to `Engine.forward` (exercise 6's training needs a mask of its own).
#
# **Exercise 5 · 练习5.** Write `target_features`, `EagleHead`, `train_eagle_head` and
# `eagle_generate`. `train_eagle_head` takes a number of steps and a seed, and with the
# same arguments it must train the same head: the grader trains yours and the reference
# for the same 40 steps on the same windows and compares their acceptance.

# %% nbgrader={"grade": false, "grade_id": "eagle_head_solution", "locked": false, "schema_version": 3, "solution": true}
def target_features(target, windows, chunk=16, layers=(-1,)):
    """The target on windows (N, W) of tokens, each at positions 0..W-1, `chunk` windows a
    pass: (features (N, W, len(layers) * D), the residual stream after each of `layers`
    (indices as in hidden_at), concatenated in that order; greedy (N, W), the target's
    argmax token after each position). No gradients. EAGLE-1: the last layer's, (N, W, D)."""
    ### BEGIN SOLUTION
    n, width = windows.shape
    features, greedy = [], []
    with torch.no_grad():
        for start in range(0, n, chunk):
            part = windows[start:start + chunk]
            positions = torch.arange(width)[None].expand(len(part), width)
            logits, hidden = target.forward(part, positions, hidden_at=tuple(layers))
            features.append(torch.cat(hidden, dim=-1))
            greedy.append(logits.argmax(dim=-1))
    return torch.cat(features), torch.cat(greedy)
    ### END SOLUTION


class EagleHead(torch.nn.Module):
    """EAGLE-1's draft head for `target` (see the text). Its parameters: `fc` and one decoder
    layer of the target's shape (norms at 1, matrices ~ N(0, 0.02^2)); the target's
    embedding, final norm and LM head are used, never trained.

    decoder(): the layer as a one-layer Engine inside the target's embedding and LM head.
    forward(tokens (B, T), features (B, T, D), positions (B, T), kv_cache=None,
    logits_at=None, decoder=None, visibility=None) -> (logits (B, T or N, V), predicted
    features (B, T, D)); `decoder`: one built earlier, reused (its weights are a snapshot of
    the parameters); `visibility`: passed on to Engine.forward (exercise 6 needs it).

    `feature_layers` and `fuse` (given) say which of the target's layers the head reads and
    how they become its feature: eagle_generate asks the target for those layers and fuses
    them, so that exercise 6's head drafts through the same loop."""

    feature_layers = (-1,)  # the target layers the head reads: EAGLE-1, the last

    def fuse(self, hidden):
        """The target's states at feature_layers, concatenated (..., len * D) -> the head's
        feature (..., D). EAGLE-1 takes the last layer's as it is."""
        return hidden

    def __init__(self, target):
        super().__init__()
        ### BEGIN SOLUTION
        w = target.weights
        D, inner = w.embed_tokens.shape[1], w.layers[0].gate_proj.shape[0]
        q, kv = w.n_heads * w.head_dim, w.n_kv_heads * w.head_dim
        self.target_weights = w  # a plain attribute: not a parameter, never trained
        self.fc = torch.nn.Linear(2 * D, D)
        shapes = dict(attention_norm=(D,), q_proj=(q, D), k_proj=(kv, D), v_proj=(kv, D), o_proj=(D, q),
                      mlp_norm=(D,), gate_proj=(inner, D), up_proj=(inner, D), down_proj=(D, inner))
        self.layer = torch.nn.ParameterDict({
            name: torch.nn.Parameter(torch.ones(shape) if len(shape) == 1 else torch.randn(shape) * 0.02)
            for name, shape in shapes.items()})
        ### END SOLUTION

    def decoder(self):
        ### BEGIN SOLUTION
        return Engine(self.target_weights.with_layers([LayerWeights(**self.layer)]))
        ### END SOLUTION

    def forward(self, tokens, features, positions, kv_cache=None, logits_at=None, decoder=None, visibility=None):
        ### BEGIN SOLUTION
        x = self.fc(torch.cat([self.target_weights.embed_tokens[tokens], features], dim=-1))
        logits, (predicted,) = (decoder or self.decoder()).forward(
            None, positions, kv_cache, logits_at=logits_at, visibility=visibility, inputs_embeds=x, hidden_at=(-1,))
        return logits, predicted
        ### END SOLUTION


def train_eagle_head(target, windows, steps, seed=0, batch=4, lr=3e-3, progress=False):
    """A new EagleHead trained for `steps` steps of `batch` windows drawn (with a generator
    seeded with `seed`) from windows (N, W); torch's own seed set to `seed` first, so the
    same arguments train the same head. Returns it with `head.losses`, the loss of every
    step. `progress`: show a progress bar."""
    ### BEGIN SOLUTION
    torch.manual_seed(seed)
    draw = torch.Generator().manual_seed(seed)
    head = EagleHead(target)
    features, greedy = target_features(target, windows)
    n, width = windows.shape
    positions = torch.arange(width - 1)[None].expand(batch, width - 1)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    warmup = max(1, steps // 20)
    head.losses = []
    for step in tqdm(range(steps), desc="training the head", disable=not progress):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
        rows = torch.randint(0, n, (batch,), generator=draw)
        x, f, g = windows[rows], features[rows], greedy[rows]
        logits, predicted = head(x[:, 1:], f[:, :-1], positions)  # item t: (x_{t+1}, f_t)
        loss = (F.cross_entropy(logits.flatten(0, 1), g[:, 1:].flatten())
                + 0.1 * F.smooth_l1_loss(predicted, f[:, 1:]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        head.losses.append(loss.item())
    return head
    ### END SOLUTION


@torch.inference_mode()
def eagle_generate(target, head, input_ids, max_new_tokens, gamma):
    """Greedy speculative decoding of input_ids (1, T), `head` drafting `gamma` tokens a cycle
    as the text says; returns (tokens, {"accepted": [drafts accepted per cycle]}) as
    speculative_generate does, the tokens equal to the target's greedy decoding. The head's
    items must see true features up to the verified sequence: keep the target's features
    of every token it has run (the verifying pass returns them: ask for
    `hidden_at=head.feature_layers` and turn them into the head's with `head.fuse`)."""
    ### BEGIN SOLUTION
    T = input_ids.shape[1]
    max_len = T + max_new_tokens + gamma + 2
    decoder = head.decoder()  # the head's layer, built once
    target_cache = RollbackKVCache.for_engine(target, max_len)
    head_cache = RollbackKVCache.for_engine(decoder, max_len)
    seq, accepted = input_ids[0].tolist(), []
    _, hidden = target.forward(input_ids[:, :-1], torch.arange(T - 1)[None], target_cache,
                               logits_at=torch.tensor([T - 2]), hidden_at=head.feature_layers)
    features = head.fuse(torch.cat(hidden, dim=-1))  # (1, T - 1, D)
    while len(seq) - T < max_new_tokens:
        L, start = len(seq), head_cache.length
        logits, predicted = head(torch.tensor([seq[start + 1:L]]), features[:, start:L - 1],
                                 torch.arange(start, L - 1)[None], head_cache,
                                 logits_at=torch.tensor([L - 2 - start]), decoder=decoder)
        drafts, feature = [int(logits[0, -1].argmax())], predicted[:, -1:]
        for i in range(1, gamma):  # further along the chain: its own predicted features
            logits, predicted = head(torch.tensor([drafts[-1:]]), feature, torch.tensor([[L - 2 + i]]),
                                     head_cache, decoder=decoder)
            drafts.append(int(logits[0, -1].argmax()))
            feature = predicted[:, -1:]
        known = target_cache.length
        feed = seq[known:] + drafts
        logits, hidden = target.forward(torch.tensor([feed]), torch.arange(known, known + len(feed))[None],
                                        target_cache, logits_at=torch.arange(L - 1 - known, len(feed)),
                                        hidden_at=head.feature_layers)
        fresh = head.fuse(torch.cat(hidden, dim=-1))  # (1, len(feed), D)
        choice = logits[0].argmax(dim=-1).tolist()
        n = 0
        while n < gamma and drafts[n] == choice[n]:
            n += 1
        accepted.append(n)
        seq += drafts[:n] + [choice[n]]
        features = torch.cat([features[:, :known], fresh[:, :L + n - known]], dim=1)
        target_cache.truncate(L + n)
        head_cache.truncate(L - 1)
    return torch.tensor([seq[:T + max_new_tokens]]), {"accepted": accepted}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "eagle_head", "locked": true, "points": 8, "schema_version": 3, "solution": false}
_windows = calibration_tokens(16 * 64, window=64)
_f, _g = target_features(target, _windows[:2])
assert _f.shape == (2, 64, 256) and _g.shape == (2, 64)
_head = train_eagle_head(target, _windows, 5)
assert len(_head.losses) == 5 and all(math.isfinite(x) for x in _head.losses)
assert not any(p is target.weights.lm_head or p is target.weights.embed_tokens for p in _head.parameters()), \
    "the target's LM head and embedding are used, not trained"
_logits, _next = _head(_windows[:1, 1:9], _f[:1, :8], torch.arange(8)[None])
assert _logits.shape == (1, 8, 4096) and _next.shape == (1, 8, 256)
_got, _ = eagle_generate(target, _head, _prompt, 16, 3)
assert _got.tolist() == _want[:, :_prompt.shape[1] + 16].tolist(), "EAGLE's greedy tokens are the target's"
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch08_speculative_decoding/eagle_head")
### END HIDDEN TESTS

# %% [markdown]
# ### Training the head · 训练草稿头
#
# The chapter trains the head on 65k tokens of the training split for 180 steps of 8
# windows (under a minute on two cores; `make test` trains it for 30 steps),
# then measures the first draft's acceptance with true features (teacher forcing) on the
# held-out split, and $\tau$ and the speed-up of `eagle_generate` against plain decoding
# on the held-out prompts of section 3.

# %%
_steps = 30 if SMALL else 180
_train = calibration_tokens(16_384 if SMALL else 65_536, window=128)
torch.set_num_threads(2)
eagle = train_eagle_head(target, _train, _steps, batch=8, progress=not SMALL)
_held = heldout_tokens(8 * 128).view(8, 128)
with torch.inference_mode():
    _features, _greedy = target_features(target, _held)
    _head_logits, _ = eagle(_held[:, 1:], _features[:, :-1], torch.arange(127)[None].expand(8, 127))
_top1 = float((_head_logits.argmax(dim=-1) == _greedy[:, 1:]).float().mean())
print(f"first draft = the target's greedy token (true features, held-out): {_top1:.2f}")


def measure_head(head, label, gammas=None):
    """[(g, tau, median speed-up over plain cached decoding)] on section 3's prompts."""
    rows = []
    for g in gammas or ([3] if SMALL else [2, 4]):
        taus, speedup = timed_against_plain(target, lambda p, n: eagle_generate(target, head, p, n, g), _prompts, _new)
        rows.append((g, statistics.mean(taus), speedup))
        print(f"{label} g = {g}: tau {rows[-1][1]:.2f}, speed-up {rows[-1][2]:.2f}x")
    return rows


_eagle_rows = measure_head(eagle, "EAGLE-1")
plt.figure(figsize=(5, 3.2))
plt.plot(eagle.losses, linewidth=0.8)
plt.xlabel("step")
plt.ylabel("cross-entropy + 0.1 smooth L1")
plt.title("training the EAGLE-1 head")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6b. Fused features and training-time test: EAGLE-3
# ### 6b. 融合特征与训练时测试：EAGLE-3
#
# The EAGLE-1 head reads one layer of the target and learns, by teacher forcing, from
# true features only; at inference its second and later drafts live on its own
# predictions, which it never saw in training. EAGLE-3 changes both [@li2025-eagle3]:
#
# - **Fused features.** The head reads three layers of the target, a low, a middle and a
#   high one, concatenated ($3h$) and projected to $h$ by `fuse_fc`, so it sees more than what
#   the last layer keeps for the very next token. The course model has 6 layers; the head
#   reads the residual stream after the 2nd, 4th and 6th (`hidden_at=(1, 3, 5)`): evenly
#   spaced, and the last is the state the LM head reads, which in a model this shallow
#   still carries most of what the next token needs. The fused feature $g_t$ then enters
#   exercise 5's head where $f_t$ did: `fc` over $[\mathrm{embed}(x_{t+1}); g_t]$ into one
#   decoder layer. (EAGLE-3's own layer takes the $2h$ concatenation straight into
#   attention; the course keeps exercise 5's $2h \to h$ projection, so that the same
#   decoder layer and the same drafting loop serve both.)
# - **Tokens only.** With three layers fused there is no single feature left to regress
#   on, and EAGLE-3 drops the regression loss: the head's output $a_{t+1}$ only has to
#   make good tokens through the frozen LM head, and to be a good input for the next step.
# - **Training-time test.** Training unrolls the head for $k$ steps on its own outputs.
#   Step 1 is exercise 5's teacher forcing: item $t$ is $(x_{t+1}, g_t)$ at position $t$,
#   and predicts $a^{(1)}_{t+1}$. Step $s > 1$ gives the chain that started at item $t$ its
#   next item: $(x_{t+s}, a^{(s-1)})$ at position $t + s - 1$, the head's own prediction in
#   place of the true feature, exactly what a draft $s$ deep sees at inference. It attends
#   as the draft does: to the true items $0 \ldots t$ and to the earlier steps of its own
#   chain, not to other chains. Every step's logits learn the target's greedy token
#   after $x_{t+s}$ by cross-entropy; the loss is their mean.
#
# The unrolled steps run on the engine as before, with two given helpers: `UnrolledCache`
# keeps the keys and values of the earlier steps *with their gradients* (a
# `RollbackKVCache` copies into a buffer), and `UnrolledVisibility` is the mask above.
# Drafting needs nothing new: `eagle_generate` asks the target for `head.feature_layers`
# and fuses them with `head.fuse`, so the EAGLE-3 head drafts through exercise 5's loop.
#
# **Exercise 6 · 练习6.** Write `Eagle3Head` (exercise 5's head plus `fuse`, its
# `fuse_fc` $3h \to h$ without a bias, and `feature_layers`), `unrolled_losses` and
# `train_eagle3_head`. As in exercise 5, the grader trains yours and the reference for the
# same steps on the same windows with the same seed and compares how often their first
# draft is the target's greedy token; it also recomputes your unrolled losses chain by
# chain, and checks that training with `unroll=3` is not training with `unroll=1`.

# %% nbgrader={"grade": false, "grade_id": "eagle3_head_solution", "locked": false, "schema_version": 3, "solution": true}
class UnrolledCache:
    """The head's cache during one unrolled training step (given): the keys and values of
    every step so far, concatenated and kept with their gradients."""

    def __init__(self):
        self.held = None  # KVView of the earlier steps

    def update(self, layer, keys, values, positions):
        if self.held is not None:
            keys = torch.cat([self.held.keys, keys], dim=2)
            values = torch.cat([self.held.values, values], dim=2)
            positions = torch.cat([self.held.positions, positions], dim=1)
        self.held = KVView(keys, values, positions)
        return self.held


class UnrolledVisibility:
    """The mask of unrolled step `step` (1, 2, ...) over windows of `items` step-1 items
    (given). Step s has items - s + 1 items, item j the chain that started at step-1 item j;
    the cache holds steps 1..s in order. Step 1 is causal; an item of a later step sees
    the step-1 items 0..j and the items of its own chain."""

    def __init__(self, items, step):
        sizes = [items - s for s in range(step)]  # items of steps 1..step
        chain = torch.arange(sizes[-1])[:, None]  # (queries, 1): each query's chain
        parts = [torch.arange(sizes[0])[None] <= chain]  # step 1: the true items up to j
        parts += [torch.arange(size)[None] == chain for size in sizes[1:]]  # own chain only
        self.mask = torch.cat(parts, dim=1)[None, None]  # (1, 1, queries, keys)

    def mask_for(self, key_positions):  # called by Engine.forward
        return self.mask


class Eagle3Head(EagleHead):
    """EAGLE-3's draft head: EagleHead (fc 2D -> D over [embedding; feature], one decoder
    layer, the target's frozen final norm and LM head), plus `fuse_fc`, a Linear 3D -> D
    without a bias, and `feature_layers`, the target layers it reads: (1, 3, 5) on the
    6-layer course model (low, middle, high). fuse((..., 3D)) -> (..., D)."""

    def __init__(self, target):
        super().__init__(target)
        ### BEGIN SOLUTION
        D, depth = target.weights.embed_tokens.shape[1], len(target.weights.layers)
        self.feature_layers = (1, depth // 2, depth - 1)
        self.fuse_fc = torch.nn.Linear(3 * D, D, bias=False)
        ### END SOLUTION

    def fuse(self, hidden):
        ### BEGIN SOLUTION
        return self.fuse_fc(hidden)
        ### END SOLUTION


def unrolled_losses(head, tokens, hidden, greedy, unroll):
    """Training-time test on windows: tokens (B, W), hidden (B, W, 3D) the target's states at
    head.feature_layers (target_features), greedy (B, W) the target's greedy tokens.
    Step 1: item t = (tokens[t + 1], fused feature of t) at position t, t = 0..W-2. Step s:
    the W - s items (tokens[t + s], the predicted feature of step s - 1's item t) at
    positions t + s - 1, through UnrolledCache and UnrolledVisibility. Returns `unroll`
    losses (scalar tensors with gradients): step s's mean cross-entropy against
    greedy[:, s:]."""
    ### BEGIN SOLUTION
    batch, width = tokens.shape
    decoder, cache, losses = head.decoder(), UnrolledCache(), []
    features = head.fuse(hidden[:, :-1])  # (B, W - 1, D): step 1 reads the true ones
    for step in range(1, unroll + 1):
        positions = torch.arange(step - 1, width - 1)[None].expand(batch, width - step)
        logits, predicted = head(tokens[:, step:], features, positions, cache, None, decoder,
                                 UnrolledVisibility(width - 1, step))
        losses.append(F.cross_entropy(logits.flatten(0, 1), greedy[:, step:].flatten()))
        features = predicted[:, :-1]  # the next step reads its own predictions
    return losses
    ### END SOLUTION


def train_eagle3_head(target, windows, steps, seed=0, batch=4, lr=3e-3, unroll=3, progress=False):
    """A new Eagle3Head trained for `steps` steps of `batch` windows drawn (with a generator
    seeded with `seed`) from windows (N, W), each step the mean of unrolled_losses over
    `unroll` steps; torch's own seed set to `seed` first, so the same arguments train the
    same head. Returns it with `head.losses`, the loss of every step. `progress`: show a
    progress bar."""
    ### BEGIN SOLUTION
    torch.manual_seed(seed)
    draw = torch.Generator().manual_seed(seed)
    head = Eagle3Head(target)
    hidden, greedy = target_features(target, windows, layers=head.feature_layers)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    warmup = max(1, steps // 20)
    head.losses = []
    for step in tqdm(range(steps), desc="training the EAGLE-3 head", disable=not progress):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
        rows = torch.randint(0, len(windows), (batch,), generator=draw)
        loss = torch.stack(unrolled_losses(head, windows[rows], hidden[rows], greedy[rows], unroll)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        head.losses.append(loss.item())
    return head
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "eagle3_head", "locked": true, "points": 8, "schema_version": 3, "solution": false}
_head3 = Eagle3Head(target)
assert [i % 6 for i in _head3.feature_layers] == [1, 3, 5], "low, middle, high: after layers 2, 4 and 6"
_h3, _g3 = target_features(target, _windows[:2, :12], layers=_head3.feature_layers)
assert _h3.shape == (2, 12, 3 * 256) and _head3.fuse(_h3).shape == (2, 12, 256)
_unrolled = unrolled_losses(_head3, _windows[:2, :12], _h3, _g3, 3)
assert len(_unrolled) == 3 and all(x.ndim == 0 and x.requires_grad for x in _unrolled), \
    "one scalar loss per unrolled step, with gradients"
_head3 = train_eagle3_head(target, _windows, 3, unroll=2)
assert len(_head3.losses) == 3 and all(math.isfinite(x) for x in _head3.losses)
_got, _ = eagle_generate(target, _head3, _prompt, 16, 3)
assert _got.tolist() == _want[:, :_prompt.shape[1] + 16].tolist(), "EAGLE-3's greedy tokens are the target's"
print("Visible checks passed.")
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch08_speculative_decoding/eagle3_head")
### END HIDDEN TESTS

# %% [markdown]
# ### Training the EAGLE-3 head · 训练EAGLE-3草稿头
#
# Same windows, same batch, but each step unrolls the head for $k = 2$ steps, which makes
# a step cost about 2.4 times exercise 5's (the second step attends through a mask, and
# everything is backpropagated through both). To keep the chapter within its time, the
# head gets 72 steps (12 in `make test`), about as much training time as the EAGLE-1
# head's 180, and is measured exactly as that head was.

# %%
_steps3 = 12 if SMALL else 72
eagle3 = train_eagle3_head(target, _train, _steps3, batch=8, unroll=2, progress=not SMALL)
with torch.inference_mode():
    _hidden3, _ = target_features(target, _held, layers=eagle3.feature_layers)
    _head_logits, _ = eagle3(_held[:, 1:], eagle3.fuse(_hidden3[:, :-1]), torch.arange(127)[None].expand(8, 127))
_top1_3 = float((_head_logits.argmax(dim=-1) == _greedy[:, 1:]).float().mean())
print(f"EAGLE-3 first draft = the target's greedy token (true features, held-out): {_top1_3:.2f}")
_eagle3_rows = measure_head(eagle3, "EAGLE-3")
plt.figure(figsize=(5, 3.2))
plt.plot(eagle3.losses, linewidth=0.8)
plt.xlabel("step")
plt.ylabel("mean cross-entropy of 2 unrolled steps")
plt.title("training the EAGLE-3 head")
plt.tight_layout()
plt.show()

# %% [markdown]
# ### A head trained on more text · 用更多数据训练的草稿头
#
# The heads above had about a minute and 65,536 tokens of training text. The same
# `EagleHead`, trained by the same `train_eagle_head` on 1,048,576 tokens for 3,000 steps
# (`models/train_eagle_head.py`, about 6 minutes on 2 threads), is in
# `models/course-lm-eagle`. Loaded into this notebook's class and measured with the same
# loop at $g = 5$:

# %%
from safetensors.torch import load_file

offline_eagle = EagleHead(target)
try:
    offline_eagle.load_state_dict(load_file(course_config.MODELS_DIR / "course-lm-eagle" / "head.safetensors"))
except RuntimeError as _exc:  # an EagleHead whose parameters are named or shaped otherwise
    print(f"the offline head's parameters do not fit this EagleHead, skipped: {str(_exc).splitlines()[0]}")
    offline_eagle = None
_offline_rows = [] if offline_eagle is None else measure_head(offline_eagle, "EAGLE-1, offline", gammas=[5])

# %% [markdown]
# ### Every drafter in one table · 各种草稿方式一览
#
# The same held-out prompts, greedy, each drafter at the best of the shapes measured
# above, against plain cached decoding in the same run:

# %%
_best_chain = max(_table, key=lambda r: r[4])  # (g, a, tau, tau predicted, speed-up, predicted)
_best_tree = max((r for r in _rows if r[1] > 1), key=lambda r: r[3])  # (depth, k, tau, speed-up)
_best_eagle = max(_eagle_rows, key=lambda r: r[2])  # (g, tau, speed-up)
print(f"{'drafter':<34} {'tau':>5} {'speed-up':>9}")
print(f"{'draft model, chain g=' + str(_best_chain[0]):<34} {_best_chain[2]:5.2f} {_best_chain[4]:8.2f}x")
print(f"{'draft model, tree ' + str(_best_tree[0]) + 'x' + str(_best_tree[1]):<34} {_best_tree[2]:5.2f} {_best_tree[3]:8.2f}x")
print(f"{'EAGLE-1 head, chain g=' + str(_best_eagle[0]):<34} {_best_eagle[1]:5.2f} {_best_eagle[2]:8.2f}x")
_best_eagle3 = max(_eagle3_rows, key=lambda r: r[2])  # (g, tau, speed-up)
print(f"{'EAGLE-3 head, chain g=' + str(_best_eagle3[0]):<34} {_best_eagle3[1]:5.2f} {_best_eagle3[2]:8.2f}x")
for _g, _tau, _speedup in _offline_rows:
    print(f"{'EAGLE-1 head, offline, chain g=' + str(_g):<34} {_tau:5.2f} {_speedup:8.2f}x")

# %% [markdown]
# With true features, the EAGLE-1 head's first draft matches the target somewhat less
# often than the draft model's does (its line above against section 3's fitted $a$),
# from one layer instead of three and after under a minute of training. Along the chain
# it has to live on its own predicted features, and acceptance falls with depth. EAGLE-1's
# feature-regression term is there to slow that fall; at this chapter's training budget,
# dropping it changed nothing we could measure (40 steps, 10 seeds).
#
# **How far would longer training go?** Measured offline on this CPU
# (`python tools/eagle_tau_study.py` with one thread, `--steps 1500 3000 --train-tokens
# 262144` likewise, `--steps 3000 6000 --train-tokens 1048576 --threads 2`; under an hour
# in all), the head of this section with the same seed, held-out text and prompts:
#
# | steps | training text | agreement | $\tau$, $g = 2$ | $\tau$, $g = 5$ | speed-up, $g = 5$ |
# |---:|---:|---:|---:|---:|---:|
# | 180 | 65k tokens | 0.37 | 1.54 | 1.55 | 0.53x |
# | 600 | 65k tokens | 0.56 | 2.04 | 2.31 | 0.67x |
# | 1,500 | 65k tokens | 0.60 | 2.02 | 2.26 | 0.71x |
# | 3,000 | 65k tokens | 0.61 | 1.97 | 2.22 | 0.72x |
# | 1,500 | 262k tokens | 0.66 | 2.22 | 2.78 | 0.77x |
# | 3,000 | 262k tokens | 0.70 | 2.23 | 2.82 | 0.83x |
# | 3,000 | 1,049k tokens | 0.71 | 2.25 | 3.00 | 0.95x |
# | 6,000 | 1,049k tokens | 0.73 | 2.34 | 3.16 | 1.02x |
#
# On 65k tokens the head stalls after 600 steps while its training loss keeps falling: it
# learns its windows by heart. Four times the text takes it to 0.70 agreement and
# $\tau = 2.8$ at $g = 5$, sixteen times to $\tau = 3.0$ (the offline head above is that
# row's recipe), well above the draft model's 1.93: more data, not more steps, is what
# this head lacks. Speed is another matter: a cycle at $g = 5$ costs about 3.1 plain
# steps on this CPU (3.16 / 1.02), so 1.5x would need $\tau \approx 4.7$ of the at most
# 6, every draft accepted with probability about 0.9. The target is itself unsure of
# its greedy tokens: on its own continuations of these prompts its top token has
# probability 0.24 on average, and at 58 % of the positions the runner-up is within 0.1
# of it, where a drafter that only approximates the target easily picks the other.
#
# **What our EAGLE-3 head shows, and what it does not.** In these runs, with about a
# minute of training each, the EAGLE-3 head is the *weaker* of the two: its first draft
# matches the target less often than the EAGLE-1 head's, and its $\tau$ is lower (about
# 1.3 against 1.5 to 1.65 in our runs on this CPU; the table above has this run's). The
# reason is its loss: without the regression term, the head learns only from one token
# per item, and 72 steps are not enough. In a run of ours outside this notebook (100
# steps each), teacher forcing only ($k = 1$) reached the same $\tau$ as $k = 2$ (1.32
# and 1.30): at this budget the unrolling neither helps nor hurts. EAGLE-3's argument is about scale: EAGLE gains
# little from more training data, the authors find, because of its feature target, and
# dropping it lets the head profit from the data [@li2025-eagle3]; a minute on two cores
# is at the other end of that scale. On MT-bench at temperature 0 the paper reports $\tau = 6.13$ and 4.40x for
# Llama-3.1-8B-Instruct, $\tau = 6.65$ and 5.58x for Vicuna-13B, trained on far more text
# than ours; those are its numbers, not this chapter's.
#
# **EAGLE-2** keeps the head and drafts a *tree*, as in section 5: the top-$k$ tokens at
# each step, expanded where the head is confident, all verified in one target pass with a
# tree attention mask [@li2024-eagle2]; EAGLE-3 drafts trees the same way.
#
# The paper's speed-ups are about 0.7 to 0.85 of $\tau$: the verifying pass is nearly flat on a
# GPU at batch 1, and the head is nearly free. Section 3's measurements show why neither
# holds on this CPU.
#
# ## 7. Batch size, money, and practice
# ### 7. 批大小、成本与实践
#
# ### ROI: speculation at batch 1 and at batch 64 · ROI：批大小1与64时的投机收益
#
# Cost per million tokens is the GPU's price per hour over the tokens it makes in an
# hour. On one H100 serving Llama-3.1-8B in SGLang, EAGLE-3 multiplies batch-1 decoding
# speed by 2.36x, and throughput at batch 64 by 1.38x [@li2025-eagle3]. At batch 64 the
# GPU is busy with 64 sequences' tokens already: verifying $g + 1$ tokens for each of
# them is no longer free, so the extra tokens cost compute that plain decoding was using.
# The price is an **assumption for illustration**.

# %%
ASSUMED_H100_HOURLY_USD = 2.50  # an assumption: your provider's price per H100-hour
BATCH1_TOKENS_PER_S = 158.34  # SGLang, Llama-3.1-8B, one H100, MT-bench [@li2025-eagle3]
EAGLE3_GAIN = {1: 373.25 / 158.34, 64: 1.38}  # batch -> throughput multiple [@li2025-eagle3]


def cost_per_million(tokens_per_s, hourly_usd=ASSUMED_H100_HOURLY_USD):
    return hourly_usd / (tokens_per_s * 3600) * 1e6


print(f"batch 1: {cost_per_million(BATCH1_TOKENS_PER_S):.2f} -> "
      f"{cost_per_million(BATCH1_TOKENS_PER_S * EAGLE3_GAIN[1]):.2f} USD per million tokens with EAGLE-3")
for _batch, _gain in EAGLE3_GAIN.items():
    print(f"batch {_batch:2d}: speculation keeps {1 / _gain:.0%} of the cost per token")

# %% [markdown]
# At batch 1 the saving is more than half the bill; at batch 64 about a quarter. A
# service decides by its load: speculation buys latency and cost when the GPU is
# waiting on memory, and little once batching has already filled it. Serving engines
# therefore shorten the draft, or switch it off, as the batch grows.
#
# ### Common pitfalls · 常见误区
#
# Sections 1 and 2 showed two failing: accepting by argmax match at $T > 0$ (the output no
# longer follows the target), and no rollback (tokens drift from greedy). Others:
#
# - Resampling a rejected token from $p$ instead of $\max(0, p - q)$: the tokens the
#   drafter over-proposed get counted twice.
# - Forgetting the bonus token: a fully accepted cycle yields $g$ tokens instead of
#   $g + 1$, and $\tau$ loses its largest term.
# - Timing with a warm cache against a cold baseline, or on different prompts:
#   speculation's gain depends on the text, so compare on the same prompts in the same run.
#
# ### Practical checklist · 实战检查清单
#
# - At temperature 0, check token equality with the target's greedy output on many
#   prompts; at $T > 0$, check the verifier's output distribution statistically.
# - Measure the three numbers of the cost model on the deployment hardware: the
#   acceptance rate on the deployment's text, the drafter's cost, and the verifying pass
#   at each length. Choose $g$ from them, per batch-size range.
# - Roll back every cache that saw a rejected draft, the drafter's included.
# - Report $\tau$ and the speed-up together: $\tau$ is a property of the drafter, the
#   speed-up of the drafter, the hardware and the batch.
#
# ### Questions · 思考题
#
# Answer each question by returning a value from its function in the cell below (the
# grader computes the answers itself). The grader runs the answer cell with the setup and
# exercise cells only, not the demonstrations: compute from those, or return the value.
#
# **Q1 · 平坦验证下的加速比.** With flat verification ($v = 1$), draft cost $c = 0.05$,
# acceptance $a = 0.8$ and $g = 6$, what speed-up does the cost model predict? (1 %
# tolerance.)
#
# **Q2 · 本机的盈亏平衡点.** On a machine where a draft step costs $c = 0.29$ target steps
# and a verifying pass over 6 tokens costs $v(6) = 1.7$, what acceptance rate $a$ makes
# speculation with $g = 5$ break even ($S = 1$)? (0.01 tolerance.)
#
# **Q3 · 大批量时收益缩小.** EAGLE-3's gain in SGLang falls from 2.36x at batch 1 to
# 1.38x at batch 64 mainly because: **(a)** at large batch the target's pass is bound by
# arithmetic, so verifying $g + 1$ tokens per sequence costs nearly $g + 1$ times a step;
# **(b)** the acceptance rate falls as the batch grows; **(c)** the draft head's weights
# no longer fit in the cache. Return `"a"`, `"b"` or `"c"`.

# %% nbgrader={"grade": false, "grade_id": "questions_solution", "locked": false, "schema_version": 3, "solution": true}
def q1_flat_verification_speedup():
    """Q1: a number."""
    ### BEGIN SOLUTION
    return expected_speedup(0.8, 6, 0.05, 1.0)
    ### END SOLUTION


def q2_break_even_acceptance():
    """Q2: a number in (0, 1)."""
    ### BEGIN SOLUTION
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if expected_speedup(middle, 5, 0.29, 1.7) < 1 else (low, middle)
    return (low + high) / 2
    ### END SOLUTION


def q3_large_batch():
    """Q3: "a", "b" or "c"."""
    ### BEGIN SOLUTION
    return "a"
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "questions", "locked": true, "points": 4, "schema_version": 3, "solution": false}
_answers = {"Q1": q1_flat_verification_speedup(), "Q2": q2_break_even_acceptance(), "Q3": q3_large_batch()}
assert isinstance(_answers["Q1"], (int, float)) and 1 < _answers["Q1"] < 7, "Q1: a speed-up between 1 and g + 1"
assert isinstance(_answers["Q2"], (int, float)) and 0 < _answers["Q2"] < 1, "Q2: an acceptance rate in (0, 1)"
assert _answers["Q3"] in ("a", "b", "c"), 'Q3: return "a", "b" or "c"'
print(", ".join(f"{_q} {_a if isinstance(_a, str) else format(_a, '.3g')}" for _q, _a in _answers.items()))
### BEGIN HIDDEN TESTS
from grader import grade; grade("ch08_speculative_decoding/questions")
### END HIDDEN TESTS

# %% [markdown]
# ## Chapter summary · 本章小结
#
# - Speculative sampling accepts a draft with probability $\min(1, p/q)$ and resamples a
#   rejection from $\max(0, p - q)$: the output follows the target's distribution
#   exactly, whatever the drafter. Greedy decoding is the $T \to 0$ case: keep a draft
#   while it equals the target's argmax.
# - One target pass verifies $g$ drafts and yields 1 to $g + 1$ tokens; both models'
#   caches must forget the rejected drafts.
# - The gain is $\tau / (g c + v(g + 1))$: acceptance, the drafter's cost and the cost of
#   the verifying pass. On a GPU at batch 1 the pass is nearly flat and the gain follows
#   $\tau$; on this CPU, and at large batch on a GPU, it is not, and the gain shrinks or
#   turns into a loss. Measure all three before choosing $g$.
# - EAGLE-class drafters raise acceptance at a fraction of a target layer's cost by
#   drafting from the target's own features; they still pay for verification.
# - EAGLE-3 reads a low, a middle and a high layer of the target, fused $3h \to h$, drops
#   the feature regression, and trains by unrolling the head on its own predictions
#   (training-time test) with the mask a draft sees at inference. One drafting loop
#   serves both heads: only `feature_layers` and `fuse` differ. With a minute of training
#   on this CPU it does not beat EAGLE-1; its design pays off with much more data.
