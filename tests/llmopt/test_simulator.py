"""The scheduling simulator: cost model physics, pool accounting, determinism, contract checks."""

import math

import pytest

from llmopt.metrics import summarize
from llmopt.simulator import (H100_SXM, H200, LLAMA3_8B, Batch, CostModel, KVBlockPool, OutOfKVBlocks,
                              PrefillOnlyScheduler, Scheduler, SchedulingError, Sequence,
                              StaticBatchingScheduler, simulate, simulate_disaggregated)
from llmopt.workload import Request, make_trace, multi_turn_trace


def test_traces_are_deterministic_and_heavy_tailed():
    a, b = make_trace(500, 10, seed=3), make_trace(500, 10, seed=3)
    assert a == b and a != make_trace(500, 10, seed=4)
    outputs = sorted(r.output_len for r in a)
    assert outputs[-5] > 4 * outputs[len(outputs) // 2], "a heavy tail: the top 1% far above the median"
    bursty = make_trace(64, 10, seed=1, arrivals="bursty", burst_size=16)
    assert len({round(r.arrival_s, 1) for r in bursty}) <= 8
    turns = multi_turn_trace(5, 3, 1.0, seed=2)
    assert len(turns) == 15 and any(r.prefix_len > 128 for r in turns)


def test_decode_is_bandwidth_bound_and_prefill_compute_bound():
    cost = CostModel(H100_SXM, LLAMA3_8B)
    assert math.isclose(cost.step_time([(1, 0)]), 15.0e9 / 3.35e12, rel_tol=0.01)
    assert cost.step_time([(1, 0)] * 64) < 1.1 * cost.step_time([(1, 0)])
    prefill = cost.step_time([(4096, 0)])
    assert prefill > 4096 * 15.0e9 / 989.4e12 and prefill > 10 * cost.step_time([(1, 0)])
    assert CostModel(H200, LLAMA3_8B).step_time([(1, 0)]) < cost.step_time([(1, 0)])


def test_pool_accounting():
    pool = KVBlockPool(4, block_size=16)
    seq = Sequence(Request(0, 0.0, 20, 5))
    assert pool.blocks_needed(seq, 20) == 2
    pool.allocate(seq, 2)
    assert pool.num_free == 2 and pool.blocks_needed(seq, 20) == 0
    with pytest.raises(OutOfKVBlocks):
        pool.allocate(seq, 3)
    pool.free(seq)
    assert pool.num_free == 4


def test_static_batching_is_exact_and_repeatable():
    trace = make_trace(60, 50, seed=9)
    one, two = (simulate(trace, StaticBatchingScheduler, num_blocks=2000, max_num_seqs=8) for _ in "ab")
    assert one.requests() == two.requests()
    assert all(r["tokens_emitted"] == r["output_len"] for r in one.requests())
    assert summarize(one.requests())["throughput_tok_s"] > 0


def test_disaggregated_prefill_hands_over_after_transfer():
    class Decode(Scheduler):
        def schedule(self, now):
            batch = Batch()
            for seq in list(self.waiting):
                if seq.kv_ready_s <= now:
                    self.pool.allocate(seq, self.pool.blocks_needed(seq, seq.num_pending_tokens))
                    self.waiting.remove(seq)
                    self.running.append(seq)
            for seq in self.running:
                self.pool.allocate(seq, self.pool.blocks_needed(seq, seq.num_pending_tokens))
                batch.add(seq, seq.num_pending_tokens)
            return batch

    trace = make_trace(20, 20, seed=1, prompt_median=500, output_median=20)
    result = simulate_disaggregated(trace, Decode, num_blocks=5000, link_bytes_per_s=1e9)
    for r in result.requests():
        assert r["tokens_emitted"] == r["output_len"]
        if r["first_decode_s"] is not None:
            assert r["first_decode_s"] > r["kv_ready_s"] >= r["first_token_s"]
    assert PrefillOnlyScheduler is not None


def test_contract_violations_are_loud():
    class Dropper(Scheduler):
        def schedule(self, now):
            self.waiting.clear()
            return Batch()

    with pytest.raises(SchedulingError, match="no progress"):
        simulate(make_trace(3, 10, seed=0), Dropper)

    class NoBlocks(Scheduler):
        def schedule(self, now):
            while self.waiting:
                self.running.append(self.waiting.popleft())
            batch = Batch()
            for seq in self.running:
                batch.add(seq, seq.num_pending_tokens)
            return batch

    with pytest.raises(SchedulingError, match="holds 0 blocks"):
        simulate(make_trace(3, 10, seed=0), NoBlocks)


def test_cpu_profile_bounds_the_real_course_model(course_models):
    """The CPU cost model, built from this machine's measured ceilings, is a roofline: the
    real forward pass of the course model takes longer than it predicts (kernels do not
    reach peak), but within one order of magnitude, so simulated CPU policies are
    realistic. Generous on purpose: both sides are measured in this run, under any load."""
    import torch

    from llmopt.bench import measure
    from llmopt.engine import Engine
    from llmopt.simulator import cpu_cost_model

    model = course_models["course-lm"]
    engine, cost = Engine.from_model(model), cpu_cost_model(model.config)
    for batch, length in ((4, 64), (8, 128)):  # compute-bound shapes; tiny ones are all overhead
        ids = torch.randint(3, 4000, (batch, length), generator=torch.Generator().manual_seed(length))
        positions = torch.arange(length).expand(batch, -1)
        with torch.no_grad():
            measured = measure(lambda: engine.forward(ids, positions), device="cpu", budget_s=1.0).median_s
        predicted = cost.step_time([(length, 0)] * batch)
        assert 0.7 <= measured / predicted <= 15, (
            f"batch {batch} x {length} tokens: measured {measured * 1e3:.1f} ms, the cost model "
            f"predicts {predicted * 1e3:.1f} ms (ratio {measured / predicted:.1f})")
