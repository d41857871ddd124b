import pytest

from llmopt.replay import batch_items, replay_served
from llmopt.serving import near_tie_flips
from llmopt.simulator import SchedulingError

TEXTS = ["import re\nimport os\n\ndef ", "    def __repr__(self):\n        return", "try:\n    import",
         "with open(path) as f:\n", "self.assertEqual(", "if __name__ == '__main__':\n"]
LENGTHS = [9, 5, 11, 7, 3, 8]


@pytest.fixture(scope="module")
def judge_side():
    """The prompts and each request generated alone, computed here in the judge: the
    oracle never runs in the student's process."""
    import torch

    from llmopt.engine import Engine
    from llmopt.models import load_model, load_tokenizer
    from llmopt.serving import generate_alone

    torch.set_num_threads(2)
    encode = load_tokenizer("course-lm").encode
    prompts = [encode(t) for t in TEXTS]
    judge_engine = Engine.from_model(load_model("course-lm"))
    return prompts, [generate_alone(judge_engine, p, n) for p, n in zip(prompts, LENGTHS)]


def serve(student, judge_side, policy, **kwargs):
    """Serve the prompts with the student's policy and run_batch, the loop run here: the
    policy's decisions recorded in the worker and replayed here, each step's batch sent to
    the worker's run_batch. Tokens, preemptions and chunks are then the ones this process
    saw, not what a patched llmopt.serving in the worker might report."""
    prompts, alone = judge_side
    log = student.library("llmopt.replay:record_served")(prompts, LENGTHS, getattr(student, policy), **kwargs)
    engine = student.library("llmopt.engine:Engine").from_model(
        student.library("llmopt.models:load_model")("course-lm"))
    run_batch_on, run_batch = student.library("llmopt.replay:run_batch_on"), student.run_batch.value()

    def step(_, batch):
        tokens = run_batch_on(engine, run_batch, batch_items(batch))
        if not (isinstance(tokens, dict) and all(type(k) is int and type(v) is int for k, v in tokens.items())):
            raise AssertionError(f"run_batch must return {{request_id: token}} with int tokens, got "
                                 f"{type(tokens).__name__}")
        return tokens

    try:
        served = replay_served(prompts, LENGTHS, log, step, **kwargs)
    except SchedulingError as stopped:
        raise AssertionError(f"serving stopped: {stopped}") from None
    return served, alone


@pytest.mark.points(4)
@pytest.mark.timeout(120)
def test_batching_with_preemption_changes_no_token(student, judge_side):
    """continuous batching with preemptions on the course model: tokens equal generating alone"""
    served, alone = serve(student, judge_side, "ContinuousBatchingScheduler", arrival_steps=[0, 0, 0, 1, 3, 5],
                          num_blocks=10, block_size=4, max_num_seqs=4)
    assert sum(served["preemptions"].values()) > 0, "this 10-block pool should force a preemption"
    near_tie_flips(served, alone)  # raises on any other difference


@pytest.mark.points(2)
@pytest.mark.timeout(120)
def test_prefill_chunks_emit_no_token_until_complete(student, judge_side):
    """with chunked prefill (budget 8) run_batch emits only for completed prefills, tokens unchanged"""
    served, alone = serve(student, judge_side, "ChunkedPrefillScheduler", num_blocks=64, block_size=4,
                          max_num_seqs=4, max_num_batched_tokens=8)
    near_tie_flips(served, alone)  # raises on any other difference
