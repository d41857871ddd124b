"""Exercise 1: the verification rule. The judge draws every draft from q itself, calls the
student's `verify` thousands of times with a generator that lives in the worker, and tests
what comes out against the target's distribution with Pearson's chi-square: the first
token against p[0], later tokens against their own rows given that the drafts before them
were accepted. The biased rules (accepting when q > p, resampling from p, matching the
argmax at T > 0) move some token's frequency by 0.05 to 0.3, which at these sample sizes
puts their statistic in the hundreds; a correct rule exceeds the bound once in 10,000
seeds, and the seeds are fixed."""
import pytest
import torch

# Pearson's chi-square, upper 1e-4 quantile, by degrees of freedom (V - 1).
CHI2_BOUND = {4: 23.51, 5: 25.74}


def chi2(counts: torch.Tensor, probs: torch.Tensor) -> float:
    n = float(counts.sum())
    expected = n * probs
    keep = expected > 0
    assert not bool((counts[~keep] > 0).any()), (
        f"tokens with target probability 0 came out: {counts[~keep].tolist()} times")
    return float(((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum())


def worker_generator(student, seed: int):
    return student.library("torch:Generator")().manual_seed(seed)


def run_rule(student, p, q, n, seed):
    """n calls of verify on drafts the judge samples from q: the list of outputs."""
    gen = torch.Generator().manual_seed(seed)
    remote = worker_generator(student, seed + 1)
    outputs = []
    for _ in range(n):
        drafts = torch.stack([torch.multinomial(row, 1, generator=gen)[0] for row in q])  # (g,)
        out = student.verify(p, q, drafts, remote)
        assert isinstance(out, torch.Tensor) and out.dim() == 1 and out.dtype == torch.long, (
            f"verify must return a 1-D long tensor, got {out!r:.80}")
        g = len(drafts)
        assert 1 <= len(out) <= g + 1, f"verify returned {len(out)} tokens for g = {g}: expected 1 to g + 1"
        assert out[:-1].tolist() == drafts[:len(out) - 1].tolist(), (
            "the tokens before the last must be the accepted drafts themselves, in order")
        outputs.append((drafts.tolist(), out.tolist()))
    return outputs


@pytest.mark.points(1)
def test_greedy_is_the_zero_temperature_limit(student):
    """to_probs at T = 0 is one-hot on the argmax; at T > 0 a softmax; greedy verify keeps argmax matches"""
    gen = torch.Generator().manual_seed(806)
    logits = torch.randn(4, 50, generator=gen) * 3
    got = student.to_probs(logits, 0)
    assert isinstance(got, torch.Tensor) and torch.equal(got.float(), torch.nn.functional.one_hot(logits.argmax(-1), 50).float()), \
        "to_probs(logits, 0) must be one-hot on the argmax"
    got = student.to_probs(logits, 0.7)
    assert torch.allclose(got, torch.softmax(logits / 0.7, -1), atol=1e-6), "to_probs(logits, T) = softmax(logits / T)"
    remote = worker_generator(student, 807)
    for _ in range(20):
        g = int(torch.randint(1, 6, (1,), generator=gen))
        target = torch.randn(g + 1, 50, generator=gen)
        want = target.argmax(-1)
        drafts = want[:g].clone()
        wrong_at = int(torch.randint(0, g + 1, (1,), generator=gen))  # g: all drafts right
        if wrong_at < g:
            drafts[wrong_at] = (drafts[wrong_at] + 1) % 50
        p = torch.nn.functional.one_hot(want, 50).float()
        q = torch.nn.functional.one_hot(drafts, 50).float()
        out = student.verify(p, q, drafts, remote).tolist()
        expected = want[:wrong_at + 1].tolist()
        assert out == expected, f"greedy verification of drafts {drafts.tolist()} against argmaxes {want.tolist()}: got {out}, expected {expected}"


@pytest.mark.points(1)
def test_shapes_that_do_not_fit_raise(student):
    """p without the extra row, or q of another length, raises ValueError"""
    p, q = torch.full((3, 4), 0.25), torch.full((2, 4), 0.25)
    for bad_p, bad_q, drafts in ((p[:2], q, torch.tensor([0, 1])), (p, q[:1], torch.tensor([0, 1]))):
        with pytest.raises(ValueError):
            student.verify(bad_p, bad_q, drafts)
            raise AssertionError(f"p {tuple(bad_p.shape)}, q {tuple(bad_q.shape)}, drafts {tuple(drafts.shape)} were accepted")


@pytest.mark.points(1)
@pytest.mark.timeout(60)
def test_edge_cases(student):
    """p = q: every draft kept, plus a bonus; one-hot p: its token always; q = 0 where p > 0"""
    p = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.2, 0.2], [0.1, 0.1, 0.8]])
    for drafts, out in run_rule(student, p, p[:2].clone(), 200, 803):
        assert len(out) == 3, f"with p == q every draft must be accepted, and a bonus added: got {out} for {drafts}"
    one_hot = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    for drafts, out in run_rule(student, one_hot, torch.tensor([[0.5, 0.2, 0.3]]), 200, 804):
        assert out[0] == 1, f"p puts all its mass on token 1, yet the output began with {out[0]}"
    outs = run_rule(student, torch.tensor([[0.5, 0.5, 0.0], [0.3, 0.3, 0.4]]), torch.tensor([[1.0, 0.0, 0.0]]), 400, 805)
    firsts = [out[0] for _, out in outs]
    assert 2 not in firsts, "token 2 has p = 0 and was emitted"
    share = firsts.count(1) / len(firsts)
    assert 0.4 < share < 0.6, (
        f"q puts no mass on token 1 but p puts 0.5: rejections must resample it from max(0, p - q), so it "
        f"should start about half the outputs; it started {share:.0%}")


@pytest.mark.points(3)
@pytest.mark.timeout(60)
def test_first_token_follows_the_target(student):
    """g = 1, V = 6, q far from p: the first output token is distributed as p[0] (chi-square)"""
    p = torch.tensor([[0.30, 0.02, 0.25, 0.08, 0.05, 0.30], [0.1, 0.3, 0.1, 0.2, 0.2, 0.1]])
    q = torch.tensor([[0.05, 0.40, 0.10, 0.30, 0.10, 0.05]])
    n = 2000
    counts, kept = torch.zeros(6), 0
    for _, out in run_rule(student, p, q, n, 801):
        counts[out[0]] += 1
        kept += len(out) == 2
    # The rule keeps a draft with probability sum(min(p, q)), the most any exact rule can;
    # sampling from p and keeping the draft only when they coincide is exact too, and keeps less.
    best = float(torch.minimum(p[0], q[0]).sum())
    spread = 4.5 * (n * best * (1 - best)) ** 0.5
    assert abs(kept - n * best) <= spread, (
        f"{kept} of {n} drafts were accepted; the rule accepts with probability sum(min(p, q)) = {best:.2f}, "
        f"about {n * best:.0f}: accept draft x with probability min(1, p(x) / q(x))")
    stat = chi2(counts, p[0])
    assert stat < CHI2_BOUND[5], (
        f"the first token's frequencies {[round(c / n, 3) for c in counts.tolist()]} do not follow the "
        f"target's p {p[0].tolist()} (chi-square {stat:.1f} over {n} samples, bound {CHI2_BOUND[5]}): "
        f"accept with probability min(1, p/q); on rejection sample from max(0, p - q), normalized")


@pytest.mark.points(2)
@pytest.mark.timeout(60)
def test_later_tokens_and_the_bonus_follow_their_rows(student):
    """g = 2, V = 5: given accepted drafts, the next token follows p[1], and the bonus p[2]"""
    p = torch.tensor([[0.30, 0.25, 0.20, 0.15, 0.10], [0.05, 0.35, 0.30, 0.10, 0.20],
                      [0.40, 0.05, 0.05, 0.20, 0.30]])
    q = torch.tensor([[0.25, 0.25, 0.25, 0.15, 0.10], [0.30, 0.10, 0.30, 0.20, 0.10]])
    n = 2500
    second, bonus = torch.zeros(5), torch.zeros(5)
    for _, out in run_rule(student, p, q, n, 802):
        if len(out) >= 2:
            second[out[1]] += 1
        if len(out) == 3:
            bonus[out[2]] += 1
    assert bonus.sum() > 0.3 * n, (
        f"only {int(bonus.sum())} of {n} calls accepted both drafts and added a bonus token; with these "
        f"p and q about half should: when every draft is accepted, sample one more token from p[g]")
    for name, counts, row in (("second token", second, p[1]), ("bonus token", bonus, p[2])):
        stat = chi2(counts, row)
        assert stat < CHI2_BOUND[4], (
            f"the {name}'s frequencies {[round(c, 3) for c in (counts / counts.sum()).tolist()]} do not "
            f"follow the target's row {row.tolist()} (chi-square {stat:.1f}, bound {CHI2_BOUND[4]})")
