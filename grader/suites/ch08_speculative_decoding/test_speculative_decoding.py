"""Exercise 2: the rollback cache and speculative decoding on the course engine. The judge
computes the target's greedy tokens itself, and replays the greedy chain (the draft
model's proposals from each accepted prefix) to know how many drafts every cycle must
accept; a speed test with a drafter that always agrees shows that the target really
verifies several tokens per pass."""
import statistics

import pytest
import torch

from course_config import THRESHOLDS
from grader.student import interleaved, reference_worker

from _course import checked_run, judge_engine, judge_replay, prompts, worker_engine

MIN_SPEED = THRESHOLDS["ch08_speculative_decoding/ideal_drafter_speed_vs_reference"].minimum


@pytest.mark.points(2)
def test_cache_appends_and_truncates(student):
    """update appends to each layer, the view holds every filled slot, truncate forgets the tail"""
    gen = torch.Generator().manual_seed(810)
    cache = student.RollbackKVCache(3, 2, 4, 16)
    stored_k, stored_pos = [], []
    for step, (n, truncate_to) in enumerate([(5, None), (3, 6), (4, 2), (1, None), (6, 9)]):
        k, v = torch.randn(1, 2, n, 4, generator=gen), torch.randn(1, 2, n, 4, generator=gen)
        start = len(stored_pos)
        pos = torch.arange(start, start + n)[None] + 100 * step
        for layer in range(3):
            view = cache.update(layer, k + layer, v - layer, pos)
        stored_k.append(k + 2)
        stored_pos += pos[0].tolist()
        want_k = torch.cat(stored_k, dim=2)
        keys, values, positions = view
        assert tuple(keys.shape) == (1, 2, len(stored_pos), 4) and torch.equal(keys, want_k), (
            f"after step {step} the last layer's view must hold the {len(stored_pos)} keys written so far, in order")
        assert positions.tolist() == [stored_pos], f"after step {step}: positions {positions.tolist()}, expected {[stored_pos]}"
        assert cache.length.value() == len(stored_pos), f"length must be {len(stored_pos)}, got {cache.length.value()}"
        if truncate_to is not None:
            cache.truncate(truncate_to)
            assert cache.length.value() == truncate_to, f"after truncate({truncate_to}) length must be {truncate_to}"
            want_k = want_k[:, :, :truncate_to]
            stored_k, stored_pos = [want_k], stored_pos[:truncate_to]
    with pytest.raises(ValueError):
        cache.truncate(cache.length.value() + 1)
        raise AssertionError("truncate to more tokens than the cache holds was accepted")
    with pytest.raises(ValueError):
        cache.update(0, torch.zeros(1, 2, 20, 4), torch.zeros(1, 2, 20, 4), torch.arange(20)[None])
        raise AssertionError("20 more tokens in a cache of max_len 16 were accepted")


@pytest.mark.points(2)
@pytest.mark.timeout(120)
def test_greedy_tokens_equal_the_targets(student):
    """three hidden prompts x g in {1, 3, 6}: the tokens of the target's own greedy decoding"""
    target, draft = worker_engine(student, "course-lm"), worker_engine(student, "course-lm-draft")
    judge_target = judge_engine("course-lm")
    for i, prompt in enumerate(prompts(3, 24, 811)):
        with torch.inference_mode():
            want = judge_target.generate(prompt, None, 20)[0].tolist()
        for gamma in (1, 3, 6):
            got, _ = checked_run(student.speculative_generate(target, draft, prompt, 20, gamma),
                                 prompt, 20, f"prompt {i}, gamma {gamma}")
            assert got == want, (
                f"prompt {i}, gamma = {gamma}: the tokens differ from the target's greedy decoding from new "
                f"token {next(j for j in range(len(want)) if got[j] != want[j]) - prompt.shape[1]} on: "
                f"check the rollback of both caches and the positions fed to each model")


@pytest.mark.points(2)
@pytest.mark.timeout(120)
def test_accepted_counts_match_the_greedy_chain(student):
    """per-cycle accepted counts equal the judge's replay of the draft model's proposals"""
    target, draft = worker_engine(student, "course-lm"), worker_engine(student, "course-lm-draft")
    judge_target, judge_draft = judge_engine("course-lm"), judge_engine("course-lm-draft")
    for i, prompt in enumerate(prompts(2, 32, 812)):
        for gamma in (3, 5):
            want_tokens, want = judge_replay(judge_target, judge_draft, prompt, 32, gamma)
            got_tokens, got = checked_run(student.speculative_generate(target, draft, prompt, 32, gamma),
                                          prompt, 32, f"prompt {i}, gamma {gamma}")
            assert got_tokens == want_tokens, f"prompt {i}, gamma = {gamma}: tokens differ from greedy decoding"
            assert got == want, (
                f"prompt {i}, gamma = {gamma}: accepted per cycle {got}, but the draft model's greedy proposals "
                f"from each accepted prefix give {want}: the drafter must see exactly the accepted sequence "
                f"(roll its cache back too, feed it what it lacks)")


@pytest.mark.points(1)
@pytest.mark.timeout(120)
def test_sampling_with_a_twin_drafter_accepts_everything(student):
    """T = 0.8, drafter = target: p and q agree, so every draft is accepted"""
    engine = worker_engine(student, "course-lm")
    generator = student.library("torch:Generator")().manual_seed(813)
    prompt = prompts(1, 16, 813)[0]
    tokens, accepted = checked_run(
        student.speculative_generate(engine, engine, prompt, 30, 4, 0.8, generator), prompt, 30, "T = 0.8")
    assert accepted and all(n == 4 for n in accepted), (
        f"with the target as its own drafter every draft must be accepted at any temperature (p = q), got "
        f"{accepted}: sample drafts from q = to_probs(draft logits, T) and verify against the same T")
    assert len(set(tokens[16:])) > 3, "T = 0.8 should sample, not repeat one token"


@pytest.fixture
def reference_speculation():
    with reference_worker("ch08_speculative_decoding", "setup", "verification_solution",
                          "speculative_decoding_solution") as reference:
        yield reference


@pytest.mark.points(1)
@pytest.mark.fresh_worker
@pytest.mark.timeout(240)
def test_an_agreeing_drafter_makes_decoding_faster(student, reference_speculation):
    """target 8x as deep as a drafter that always agrees, g = 5: at least 0.6x the reference's speed"""
    sides = {}
    for side in (student, reference_speculation):
        sides[side] = (worker_engine(side, "course-lm", silent_layers=7), worker_engine(side, "course-lm"))
    judge_target = judge_engine("course-lm")
    new_tokens, gamma = 36, 5
    fresh = prompts(8, 24, 814)

    def calls(side, prompt):
        target, draft = sides[side]
        return [((target, draft, prompt, new_tokens, gamma), {})]

    def make_calls(round_index):
        prompt = fresh[round_index]
        return calls(student, prompt), calls(reference_speculation, prompt)

    def check(round_index, student_out, reference_out):
        with torch.inference_mode():
            want = judge_target.generate(fresh[round_index], None, new_tokens)[0].tolist()
        got, _ = checked_run(student_out[0], fresh[round_index], new_tokens, "timed run")
        assert got == want, "tokens differ from the target's greedy decoding while timing"

    # warm-up (first calls allocate), then rounds on fresh prompts
    student.speculative_generate(*calls(student, fresh[-1])[0][0])
    reference_speculation.speculative_generate(*calls(reference_speculation, fresh[-1])[0][0])
    ratios = interleaved(student.speculative_generate, reference_speculation.speculative_generate, make_calls, 3,
                         check, passes=lambda r: 1 / r >= MIN_SPEED)
    speed = 1 / statistics.median(ratios)
    print(f"reference time / student time, agreeing drafter: {speed:.2f}")  # the judge's log
    assert speed >= MIN_SPEED, (
        f"with a drafter that always agrees and a target 8x its cost, your speculative decoding ran at "
        f"{speed:.2f}x the reference's speed (median of up to 3 rounds); at least {MIN_SPEED:g}x is expected. "
        f"The target must verify all g + 1 tokens in ONE forward pass with its cache, and each model must "
        f"be fed only the tokens its cache lacks")
