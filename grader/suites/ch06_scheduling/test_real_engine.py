import pytest

NEAR_TIE = 1e-4
TEXTS = ["import re\nimport os\n\ndef ", "    def __repr__(self):\n        return", "try:\n    import",
         "with open(path) as f:\n", "self.assertEqual(", "if __name__ == '__main__':\n"]
LENGTHS = [9, 5, 11, 7, 3, 8]


def serve(student, policy, **kwargs):
    tokenizer = student.library("llmopt.models:load_tokenizer")("course-lm")
    prompts = [tokenizer.encode(t) for t in TEXTS]
    engine = student.library("llmopt.engine:Engine").from_model(
        student.library("llmopt.models:load_model")("course-lm"))
    served = student.library("llmopt.serving:serve_on_engine")(
        engine, prompts, LENGTHS, getattr(student, policy), student.run_batch, **kwargs)
    alone = [student.library("llmopt.serving:generate_alone")(engine, p, n) for p, n in zip(prompts, LENGTHS)]
    return served, alone


def check_same_tokens(served, alone):
    for i, (tokens, gaps) in enumerate(alone):
        got = served["tokens"][i] if i in served["tokens"] else served["tokens"][str(i)]
        assert len(got) == len(tokens), f"request {i} generated {len(got)} tokens, expected {len(tokens)}"
        if got != tokens:
            k = next(j for j, (a, b) in enumerate(zip(got, tokens)) if a != b)
            assert gaps[k] < NEAR_TIE, (
                f"request {i} differs from generating it alone at token {k} (top-2 logit gap "
                f"{gaps[k]:.2e}, not a near-tie): check the left padding and the positions")


@pytest.mark.points(4)
@pytest.mark.timeout(120)
def test_batching_with_preemption_changes_no_token(student):
    """continuous batching with preemptions on the course model: tokens equal generating alone"""
    served, alone = serve(student, "ContinuousBatchingScheduler", arrival_steps=[0, 0, 0, 1, 3, 5],
                          num_blocks=10, block_size=4, max_num_seqs=4)
    assert sum(served["preemptions"].values()) > 0, "this 10-block pool should force a preemption"
    check_same_tokens(served, alone)


@pytest.mark.points(2)
@pytest.mark.timeout(120)
def test_prefill_chunks_emit_no_token_until_complete(student):
    """with chunked prefill (budget 8) run_batch emits only for completed prefills, tokens unchanged"""
    served, alone = serve(student, "ChunkedPrefillScheduler", num_blocks=64, block_size=4,
                          max_num_seqs=4, max_num_batched_tokens=8)
    check_same_tokens(served, alone)
