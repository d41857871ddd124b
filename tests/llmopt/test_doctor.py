"""llmopt.doctor (runner, probe, report) and llmopt.fakegpu (the simulated device of chapter 4)."""

import json
import math

import pytest

from llmopt import doctor
from llmopt.fakegpu import FakeGPU


def test_fakegpu_launch_is_asynchronous_and_sync_waits():
    gpu = FakeGPU(kernel_s=2e-3, launch_s=1e-5, compile_s=0.3)
    gpu.kernel()
    assert math.isclose(gpu.clock(), 0.3 + 1e-5)  # compilation and launch, not the work
    gpu.synchronize()
    assert math.isclose(gpu.clock(), 0.3 + 1e-5 + 2e-3)
    start = gpu.clock()
    for _ in range(3):
        gpu.kernel()
    assert math.isclose(gpu.clock() - start, 3e-5)  # the host only queued
    gpu.synchronize()
    assert math.isclose(gpu.clock() - start, 1e-5 + 3 * 2e-3)  # in-order queue: launches overlap the work
    assert gpu.calls == 4 and gpu.syncs == 2


def test_fakegpu_outliers_count_every_call():
    gpu = FakeGPU(kernel_s=1e-3, launch_s=0.0, compile_s=0.0, outliers={1: 0.5})
    durations = []
    for _ in range(3):
        gpu.synchronize()
        start = gpu.clock()
        gpu.kernel()
        gpu.synchronize()
        durations.append(gpu.clock() - start)
    assert [round(d, 6) for d in durations] == [0.001, 0.501, 0.001]
    with pytest.raises(ValueError):
        FakeGPU(kernel_s=-1.0)


def test_probe_is_plain_data_and_blocked_without_a_gpu():
    facts = doctor.probe()
    json.dumps(facts)  # plain data: it can be recorded and replayed
    assert facts["head_dim"] == 32  # the course model's
    lines = doctor.run(doctor.BUILTIN_CHECKS, facts)
    assert {line.status for line in lines} <= set(doctor.STATUSES)
    if facts["nvidia_smi"] is None:
        assert [line.status for line in lines if line.name == "GPU visible"] == ["blocked"]
    if facts["packages"]["vllm"] is None:
        assert [line.status for line in lines if line.name == "vLLM"] == ["blocked"]


def test_run_accepts_tuples_lists_and_turns_a_raising_check_into_fail():
    def good(facts):
        return ("pass", "a", "fine")

    def several(facts):
        return [doctor.Check("warn", "b", "careful"), ("blocked", "c", "no GPU")]

    def broken(facts):
        raise KeyError("nvidia_smi")

    def wrong_type(facts):
        return 42

    lines = doctor.run([good, several, broken, wrong_type], facts={})
    assert [(line.status, line.name) for line in lines] == [
        ("pass", "a"), ("warn", "b"), ("blocked", "c"), ("fail", "broken"), ("fail", "wrong_type")]
    assert "KeyError" in lines[3].reason
    text = doctor.report(lines)
    assert text.splitlines()[-1] == "-- 1 pass, 1 warn, 2 fail, 1 blocked"
    with pytest.raises(ValueError):
        doctor.Check("ok", "x", "not a status")


def test_gpu_visible_fails_when_torch_cannot_see_the_gpu():
    facts = {"nvidia_smi": "name\nNVIDIA H100\n", "cuda_available": False}
    assert doctor.check_gpu_visible(facts).status == "fail"
    assert doctor.check_gpu_visible({**facts, "cuda_available": True}).status == "pass"


def test_main_exits_zero_on_this_machine(capsys):
    assert doctor.main() == 0  # the course machine: blocked lines, no failures
    assert capsys.readouterr().out.splitlines()[-1].startswith("-- ")
