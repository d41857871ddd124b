"""Chapter 6's leaderboard: the student's policy replays the first 40 requests of the
Mooncake chat trace on two simulated H200s (Llama-3.1-8B, calibrated CUDA-graph costs,
prefix cache on the trace's block hashes), and its goodput per GPU is recorded for the
class ranking (`python -m grader leaderboard ch06`).

Every probe of the student's bisection is the student's decisions, recorded in the worker
and replayed here (`_simulation.run_student`); the reference is the course's chunked
policy from the instructors' notebook, run here with its token budget of 2,048."""

import pytest
from _simulation import run_student

from course_config import THRESHOLDS
from llmopt.metrics import goodput, slo_attainment
from llmopt.simulator import H200, LLAMA3_8B, CostModel, simulate
from llmopt.workload import at_rate, load_mooncake

TRACE = load_mooncake(limit=40)
SLO = (10.0, 0.100)
SETUP = dict(hardware="h200", instances=2, model="llama3-8b", efficiency="h200-cuda-graphs",
             block_size=16, max_num_seqs=128, num_blocks=CostModel(H200, LLAMA3_8B).kv_blocks())
REFERENCE_BUDGET = 2048


def _reference_goodput(reference) -> float:
    run = lambda rate: simulate(at_rate(TRACE, rate), reference.ChunkedPrefillScheduler,
                                max_num_batched_tokens=REFERENCE_BUDGET, **SETUP).requests()
    return goodput(run, *SLO, start_rate=2, rel_tol=0.1)


@pytest.mark.points(3)
@pytest.mark.timeout(120)
def test_goodput_per_gpu_on_the_mooncake_trace(student, reference, record_property):
    """goodput per GPU on the Mooncake slice at least 90% of the reference's (and your number on the leaderboard)"""
    budget = student.LEADERBOARD_TOKEN_BUDGET.value()
    assert type(budget) is int and 256 <= budget <= 16384, (
        f"LEADERBOARD_TOKEN_BUDGET must be an int from 256 to 16384, got {budget!r}")
    ref = _reference_goodput(reference)

    def run(rate):
        requests, _, violations = run_student(student, "LeaderboardScheduler", at_rate(TRACE, rate),
                                              max_num_batched_tokens=budget, **SETUP)
        assert not violations, f"your scheduler broke the serving contract: {violations[0]}"
        return requests

    mine = goodput(run, *SLO, start_rate=ref, rel_tol=0.1)
    per_gpu = mine / SETUP["instances"]
    record_property("leaderboard", {"metric": "Mooncake goodput per GPU", "value": per_gpu, "unit": "req/s"})
    minimum = THRESHOLDS["ch06_scheduling/goodput_vs_reference"].minimum
    assert mine >= minimum * ref, (
        f"goodput {per_gpu:.2f} req/s per GPU, below {minimum:.0%} of the reference's "
        f"{ref / SETUP['instances']:.2f}")
