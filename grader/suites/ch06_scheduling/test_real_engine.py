"""Exercise 5: run_batch serves the course model through the paged KV store.

The serving loop runs here in the judge: the student's policy decisions are recorded in
the worker and replayed here, on the judge's own KV pool, which chooses every block
table and finds every prefix hit; each step's batch is sent to the worker's run_batch,
with a PagedKVStore that lives in the worker from step to step. Token ids whose KV is
already cached are sent hidden (-1), so a run_batch that recomputes a prefix hit reads
garbage. Tokens are compared with each request generated alone, by the judge's engine.
"""
import pytest

from llmopt.replay import batch_items, replay_served
from llmopt.serving import near_tie_flips
from llmopt.simulator import SchedulingError

SYSTEM = "# Python. Short, typed answers only.\n"  # a prefix every prompt shares: prefix hits
TEXTS = ["import re\nimport os\n\ndef ", "    def __repr__(self):\n        return", "try:\n    import",
         "with open(path) as f:\n", "self.assertEqual(", "if __name__ == '__main__':\n"]
LENGTHS = [20, 12, 18, 16, 8, 14]
HINT = ("\nCompute only tokens max(seq.num_computed_tokens, seq.num_cached_tokens) .. "
        "seq.num_computed_tokens + n of each sequence (the grader hides the ids below: their KV is "
        "in the cache), write and read them through this step's seq.block_table (a preempted "
        "sequence comes back in other blocks), and take each emitting sequence's logits at its "
        "own last packed token.")


@pytest.fixture(scope="module")
def judge_side():
    """The prompts and each request generated alone, computed here in the judge: the
    oracle never runs in the student's process."""
    import torch

    from llmopt.engine import Engine
    from llmopt.models import load_tokenizer
    from llmopt.serving import generate_alone

    torch.set_num_threads(2)
    encode = load_tokenizer("course-lm").encode
    prompts = [encode(SYSTEM + t) for t in TEXTS]
    judge_engine = Engine.from_checkpoint("course-lm")
    return prompts, [generate_alone(judge_engine, p, n) for p, n in zip(prompts, LENGTHS)]


def serve(student, judge_side, policy, **setup):
    """Serve the prompts with the student's policy and run_batch, the loop run here."""
    prompts, alone = judge_side
    log = student.library("llmopt.replay:record_served")(prompts, LENGTHS, getattr(student, policy), **setup)
    engine = student.library("llmopt.engine:Engine").from_checkpoint("course-lm")
    store = student.library("llmopt.serving:PagedKVStore").for_engine(engine, setup["num_blocks"],
                                                                       setup["block_size"])
    run_batch_on, run_batch = student.library("llmopt.replay:run_batch_on"), student.run_batch.value()

    def step(_, batch, kv):
        tokens = run_batch_on(engine, run_batch, batch_items(batch), store)
        if not (isinstance(tokens, dict) and all(type(k) is int and type(v) is int for k, v in tokens.items())):
            raise AssertionError(f"run_batch must return {{request_id: token}} with int tokens, got "
                                 f"{type(tokens).__name__}")
        return tokens

    try:
        served = replay_served(prompts, LENGTHS, log, step, **setup)
    except SchedulingError as stopped:
        raise AssertionError(f"serving stopped: {stopped}") from None
    return served, alone


def same_tokens(served, alone) -> None:
    try:
        near_tie_flips(served, alone)  # any difference but a near-tie raises
    except AssertionError as wrong:
        raise AssertionError(f"{wrong}{HINT}") from None


@pytest.mark.points(4)
@pytest.mark.timeout(180)
def test_paging_preemption_and_prefix_hits_change_no_token(student, judge_side):
    """continuous batching on paged KV, a 16-block pool forcing preemptions, a shared prefix: tokens equal generating alone"""
    served, alone = serve(student, judge_side, "ContinuousBatchingScheduler", arrival_steps=[0, 0, 1, 2, 4, 6],
                          num_blocks=16, block_size=4, max_num_seqs=4)
    assert sum(served["preemptions"].values()) > 0, "this 16-block pool should force a preemption"
    hits = served["prefix_hit_tokens"]
    assert sum(hits.values()) > 0, "requests sharing a system prompt should find it in the prefix cache"
    same_tokens(served, alone)
    needed = sum(len(p) + n - 1 for p, n in zip(judge_side[0], LENGTHS))
    assert served["computed_tokens"] < needed, "prefix hits should save computation"


@pytest.mark.points(2)
@pytest.mark.timeout(180)
def test_prefill_chunks_and_prefix_hits_change_no_token(student, judge_side):
    """chunked prefill (budget 8) over prefix hits: only completed prefills emit, tokens unchanged"""
    served, alone = serve(student, judge_side, "ChunkedPrefillScheduler", num_blocks=64, block_size=4,
                          max_num_seqs=4, max_num_batched_tokens=8)
    assert sum(served["prefix_hit_tokens"].values()) > 0, "a shared system prompt should be found in the cache"
    same_tokens(served, alone)
