"""思考题 of chapter 6: the judge recomputes every answer on the notebook's own setup
(section 8: the capacity trace, SLOs, H100 roofline, KV blocks from memory) with the
course's reference schedulers, and compares the student's plain values with it."""

from functools import lru_cache

import pytest

from grader.suites._answers import number
from llmopt.metrics import goodput
from llmopt.simulator import H100_SXM, LLAMA2_7B, LLAMA3_8B, RDMA_400G, CostModel, simulate_disaggregated
from llmopt.workload import at_rate, make_trace

TRACE = make_trace(80, 20, seed=3, prompt_median=1500, prompt_sigma=0.8, output_median=150, prompt_max=8000)
SLO = (0.25, 0.010)


class _Truth:
    def __init__(self, reference):
        self.reference = reference

    @lru_cache(maxsize=None)
    def per_gpu(self, kind, model, link_gbps=450):
        """Goodput per GPU of "xPyD" on the notebook's capacity trace and SLOs."""
        cost = CostModel(H100_SXM, model)
        server = dict(cost=cost, num_blocks=cost.kv_blocks(), max_num_seqs=128)
        p, d = int(kind[0]), int(kind[2])
        run = lambda rate: simulate_disaggregated(
            at_rate(TRACE, rate), self.reference.DecodeScheduler, num_prefill=p, num_decode=d,
            link_latency_s=RDMA_400G.latency_s, link_bytes_per_s=link_gbps * 1e9, **server).requests()
        return goodput(run, *SLO, start_rate=8, rel_tol=0.1) / (p + d)


@pytest.fixture(scope="module")
def truth(reference):
    return _Truth(reference)


def _check_ratio(student, truth, name, model):
    got = getattr(student, name)()
    kinds = ("1P1D", "1P2D", "2P1D")
    assert got in kinds, f"{name}() must return one of {kinds}, got {got!r:.100}"
    scores = {k: truth.per_gpu(k, model) for k in kinds}
    assert scores[got] >= max(scores.values()), (
        f"{got} is not the best ratio for {model.name}: where is its work, prefill or decode?")


@pytest.mark.points(1)
@pytest.mark.timeout(60)
def test_best_ratio_gqa(student, truth):
    """question 1: the best prefill:decode ratio per GPU for Llama-3.1-8B over NVLink"""
    _check_ratio(student, truth, "question_1", LLAMA3_8B)


@pytest.mark.points(1)
@pytest.mark.timeout(60)
def test_best_ratio_mha(student, truth):
    """question 2: the best prefill:decode ratio per GPU for Llama-2-7B (MHA) over NVLink"""
    _check_ratio(student, truth, "question_2", LLAMA2_7B)


@pytest.mark.points(1)
@pytest.mark.timeout(60)
def test_mha_link_loss(student, truth):
    """question 3: the share of 1P1D's goodput per GPU Llama-2-7B loses at 12.5 GB/s, within 0.05"""
    got = number(student.question_3(), "question_3()")
    want = 1 - truth.per_gpu("1P1D", LLAMA2_7B, 12.5) / truth.per_gpu("1P1D", LLAMA2_7B, 450)
    assert abs(got - want) <= 0.05, f"{got:.3f} is more than 0.05 away from the loss on this trace"
