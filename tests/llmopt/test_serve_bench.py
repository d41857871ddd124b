"""The serving benchmark's machinery on a 3-request chat trace, with the reference
components read from the instructors' notebooks (as `make bench` runs them)."""

from __future__ import annotations

import math

import pytest

from llmopt.serve_bench import (ENGINE_BATCH_1, ENGINE_TRACE, ONE_AT_A_TIME, STATIC,
                                chat_workload, run_serving_benchmark)


@pytest.fixture(scope="module")
def workload(tokenizer):
    return chat_workload(tokenizer, n_sessions=1, turns=3, system_len=32, user_median=8,
                         output_median=6, output_max=8, max_len=128)


def test_chat_turns_resend_the_conversation(workload):
    assert len(workload) == 3
    first, second, third = workload.prompts
    assert second[:len(first)] == first and third[:len(second)] == second
    assert workload.shared_prefix_tokens() == len(first) + len(second)
    assert all(len(p) + r.output_len <= 128 for p, r in zip(workload.prompts, workload.requests))


def test_four_servers_generate_the_same_tokens(course_models, workload):
    from tools.bench_serving import reference_components

    report = run_serving_benchmark(course_models["course-lm"], workload, static_batch_size=2,
                                   progress=False,
                                   serve_options={"num_blocks": 24, "block_size": 4,
                                                  "max_num_seqs": 2},
                                   **reference_components())
    assert list(report.runs) == [ONE_AT_A_TIME, ENGINE_BATCH_1, STATIC, ENGINE_TRACE]
    assert report.mismatches() == []
    for name, run in report.runs.items():
        assert [len(run.tokens[r.request_id]) for r in workload.requests] == \
            [r.output_len for r in workload.requests], name
        assert run.tokens_per_s > 0 and math.isfinite(run.tokens_per_s)
    assert report.speedup(ONE_AT_A_TIME) == 1.0
    assert not math.isnan(report.summary(ENGINE_BATCH_1)["goodput_rps"])
    text = report.table()
    assert "tokens: 3 of 3 requests identical across all 4 servers" in text
    import matplotlib.pyplot as plt
    assert len(report.plot()) == 2
    plt.close("all")
