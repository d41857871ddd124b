"""Exercise 4: draft trees. The judge builds each tree itself the slow, obvious way (one
drafter pass over the whole sequence and path for every node, no cache, no tree mask),
and replays the greedy walk over those trees to know how many nodes each cycle must
accept; the tokens must be the target's own greedy decoding."""
import pytest
import torch
import torch.nn.functional as F

from _course import checked_run, judge_engine, judge_replay, prompts, worker_engine


def judge_mask(parents: list[int]) -> list[list[bool]]:
    n = len(parents)
    mask = [[False] * n for _ in range(n)]
    for i in range(n):
        node = i
        while node >= 0:
            mask[i][node] = True
            node = parents[node]
    return mask


def judge_tree(draft, seq: list[int], depth: int, top_k: int):
    """(tokens, parents) of the tree that the text defines, each node's log-probabilities
    from a full pass over seq + its path."""
    def log_probs(path):
        ids = torch.tensor([seq + path])
        with torch.inference_mode():
            return F.log_softmax(draft.forward(ids, torch.arange(ids.shape[1])[None])[0, -1], dim=-1)

    scores, best = log_probs([]).topk(top_k)
    tokens, parents, cumulative = best.tolist(), [-1] * top_k, scores.tolist()
    paths = [[t] for t in tokens]
    frontier = list(range(top_k))
    for _ in range(1, depth):
        candidates = []
        for node in frontier:
            scores, best = log_probs(paths[node]).topk(top_k)
            candidates += [(cumulative[node] + float(s), node, int(t)) for s, t in zip(scores, best)]
        candidates.sort(key=lambda c: -c[0])
        frontier = []
        for score, node, token in candidates[:top_k]:
            tokens.append(token)
            parents.append(node)
            cumulative.append(score)
            paths.append(paths[node] + [token])
            frontier.append(len(tokens) - 1)
    return tokens, parents


def judge_tree_replay(target, draft, prompt: torch.Tensor, new_tokens: int, depth: int, top_k: int):
    """The target's greedy tokens and the nodes accepted in each cycle over the judge's trees."""
    T = prompt.shape[1]
    with torch.inference_mode():
        want = target.generate(prompt, None, new_tokens + depth + 1)[0].tolist()
    position, accepted = T, []
    while position - T < new_tokens:
        tokens, parents = judge_tree(draft, want[:position], depth, top_k)
        node, n = -1, 0
        while True:
            node = next((i for i, (p, x) in enumerate(zip(parents, tokens))
                         if p == node and x == want[position + n]), None)
            if node is None:
                break
            n += 1
        accepted.append(n)
        position += n + 1
    return want[:T + new_tokens], accepted


@pytest.mark.points(2)
def test_the_mask_marks_each_node_and_its_ancestors(student):
    """chains, stars, a fixed tree and 20 random trees; a parent after its child is a ValueError"""
    gen = torch.Generator().manual_seed(820)
    trees = [[-1, 0, 1, 2, 3], [-1] * 5, [-1, -1, 0, 0, 1, 2, 2, 5]]
    for _ in range(20):
        n = int(torch.randint(2, 14, (1,), generator=gen))
        trees.append([int(torch.randint(-1, i, (1,), generator=gen)) for i in range(n)])
    for parents in trees:
        got = student.tree_attention_mask(parents)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.bool, "return a bool tensor"
        assert tuple(got.shape) == (len(parents), len(parents)), f"shape (n, n) for n = {len(parents)}"
        want = judge_mask(parents)
        if got.tolist() != want:
            i = next(i for i in range(len(parents)) if got[i].tolist() != want[i])
            raise AssertionError(
                f"parents {parents}: row {i} is {got[i].int().tolist()}, expected {[int(x) for x in want[i]]} "
                f"(node {i}, its parent, its parent's parent, ...; never a sibling or another branch)")
    with pytest.raises(ValueError):
        student.tree_attention_mask([-1, 2, 0])
        raise AssertionError("parents [-1, 2, 0] (node 1's parent comes after it) was accepted")


@pytest.mark.points(2)
@pytest.mark.timeout(120)
def test_draft_trees_are_the_texts_trees(student):
    """two hidden prompts x (depth, k) in {(3, 2), (2, 3)}, from an empty and from a part-filled
    cache: the judge's tokens and parents, and the cache cut back to the sequence"""
    draft = worker_engine(student, "course-lm-draft")
    judge_draft = judge_engine("course-lm-draft")
    for i, prompt in enumerate(prompts(2, 28, 821)):
        seq = prompt[0].tolist()
        for depth, top_k in ((3, 2), (2, 3)):
            for held in (0, 20):
                cache = student.RollbackKVCache.for_engine(draft, 96)
                if held:
                    draft.forward(prompt[:, :held], torch.arange(held)[None], cache)
                got = student.draft_tree(draft, cache, seq, depth, top_k)
                assert isinstance(got, tuple) and len(got) == 2, "return (tokens, parents)"
                tokens, parents = (list(x) for x in got)
                want_tokens, want_parents = judge_tree(judge_draft, seq, depth, top_k)
                where = f"prompt {i}, depth {depth}, k {top_k}, {held} tokens already in the cache"
                assert parents == want_parents and tokens == want_tokens, (
                    f"{where}: tree tokens {tokens} with parents {parents}, expected {want_tokens} with parents "
                    f"{want_parents} (depth 1: the k most likely tokens; then the k children with the highest "
                    f"cumulative log-probability, each node seeing only its ancestors, at position L - 1 + depth)")
                assert cache.length.value() == len(seq), (
                    f"{where}: the cache must hold the {len(seq)} tokens of the sequence after drafting, "
                    f"holds {cache.length.value()}")


@pytest.mark.points(2)
@pytest.mark.timeout(120)
def test_tree_tokens_equal_the_targets_greedy(student):
    """three hidden prompts x (depth, k) in {(3, 2), (2, 3), (3, 1)}: the target's greedy tokens"""
    target, draft = worker_engine(student, "course-lm"), worker_engine(student, "course-lm-draft")
    judge_target = judge_engine("course-lm")
    for i, prompt in enumerate(prompts(3, 24, 822)):
        with torch.inference_mode():
            want = judge_target.generate(prompt, None, 20)[0].tolist()
        for depth, top_k in ((3, 2), (2, 3), (3, 1)):
            got, _ = checked_run(student.tree_generate(target, draft, prompt, 20, depth, top_k),
                                 prompt, 20, f"prompt {i}, depth {depth}, k {top_k}")
            assert got == want, (
                f"prompt {i}, depth {depth}, k {top_k}: the tokens differ from the target's greedy decoding "
                f"from new token {next(j for j in range(len(want)) if got[j] != want[j]) - prompt.shape[1]} on: "
                f"check the tree mask, the nodes' positions and what each cache holds after a cycle")


@pytest.mark.points(2)
@pytest.mark.timeout(180)
def test_accepted_nodes_match_the_greedy_walk(student):
    """per-cycle accepted counts equal the judge's walk over its own trees; width 1 is the chain"""
    target, draft = worker_engine(student, "course-lm"), worker_engine(student, "course-lm-draft")
    judge_target, judge_draft = judge_engine("course-lm"), judge_engine("course-lm-draft")
    for i, prompt in enumerate(prompts(2, 32, 823)):
        for depth, top_k in ((3, 2), (2, 3), (4, 1)):
            if top_k == 1:
                want_tokens, want = judge_replay(judge_target, judge_draft, prompt, 28, depth)
            else:
                want_tokens, want = judge_tree_replay(judge_target, judge_draft, prompt, 28, depth, top_k)
            got_tokens, got = checked_run(student.tree_generate(target, draft, prompt, 28, depth, top_k),
                                          prompt, 28, f"prompt {i}, depth {depth}, k {top_k}")
            assert got_tokens == want_tokens, f"prompt {i}, depth {depth}, k {top_k}: tokens differ from greedy"
            assert got == want, (
                f"prompt {i}, depth {depth}, k {top_k}: accepted per cycle {got}, but walking the trees drafted "
                f"from each accepted sequence gives {want}: accept the longest path of nodes that the target's "
                f"greedy choices follow, and draft each tree from exactly the accepted sequence")
