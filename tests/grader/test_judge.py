"""The judge's verdicts: every status, points, and messages that never show test code."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import course_config
from grader.judge import run_suites

SYNTHETIC_SUITE = '''
import pytest

@pytest.mark.points(2)
def test_passes(student):
    """a passing test"""
    assert student.double(2) == 4, "double(2) should be 4"

def test_fails(student):
    """a failing test"""
    secret_expected_value = 5
    assert student.double(2) == secret_expected_value, "double(2) is not what the judge wanted"

@pytest.mark.timeout(0.5)
def test_times_out(student):
    """a hanging call"""
    student.spin()

def test_crashes(student):
    """an exiting call"""
    student.leave()

def test_after_the_crash(student):
    """a test after a crash gets a fresh worker"""
    assert student.double(5) == 10, "double(5) should be 10"

@pytest.mark.needs("cuda")
def test_gpu_only(student):
    """a GPU-only test"""
    assert False, "unreachable without a GPU"
'''

STUDENT = """
import os
def double(x):
    return 2 * x
def spin():
    while True:
        pass
def leave():
    os._exit(4)
"""


def test_every_status_from_one_suite(tmp_path):
    suite = tmp_path / "test_synthetic.py"
    suite.write_text(SYNTHETIC_SUITE)
    cells = tmp_path / "cells.json"
    cells.write_text(json.dumps([{"name": "'cell'", "source": STUDENT}]))
    results = tmp_path / "results.json"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "grader.judge", "-p", "no:cacheprovider",
                    "--assert=plain", "-o", "addopts=", f"--student-source={cells}", f"--results={results}",
                    "--chapter=ch01_why_optimize", str(suite)], cwd=course_config.ROOT, capture_output=True)
    tests = {t["name"]: t for t in json.loads(results.read_text())[f"{tmp_path.name}/synthetic"]}
    statuses = {name: t["status"] for name, t in tests.items()}
    gpu = "passed" if __import__("torch").cuda.is_available() else "blocked"
    assert statuses == {"a passing test": "passed", "a failing test": "failed", "a hanging call": "timeout",
                        "an exiting call": "crashed", "a test after a crash gets a fresh worker": "passed",
                        "a GPU-only test": gpu if gpu == "blocked" else "failed"}
    assert tests["a passing test"]["points"] == 2
    failed = tests["a failing test"]["message"]
    assert failed == "double(2) is not what the judge wanted", "only the message, never the test's source"
    assert "secret_expected_value" not in json.dumps(tests)
    assert "exited with status 4" in tests["an exiting call"]["message"]


def test_run_suites_scores_reference_behaviour_and_reports_missing_suites():
    cells = [{"name": "'x'", "source": "def compound_efficiency(f):\n    raise NotImplementedError\n"}]
    results = run_suites(cells, ["ch01_why_optimize/compounding", "ch01_why_optimize/no_such_cell"],
                         chapter="ch01")
    compounding = results["ch01_why_optimize/compounding"]
    assert compounding.earned == 0 and compounding.available > 0
    assert all(t.status == "failed" for t in compounding.tests)
    assert any("NotImplementedError" in t.message for t in compounding.tests)
    missing = results["ch01_why_optimize/no_such_cell"].tests
    assert [t.status for t in missing] == ["error"]


def test_feedback_explains_a_repeated_cause_once_and_leaves_passed_tests_bare():
    from grader.judge import SuiteResult, TestResult
    from grader.notebook import render

    result = SuiteResult("ch01_why_optimize/roi", [
        TestResult("first", 1, "passed"), TestResult("second", 1, "passed"),
        TestResult("third", 1, "failed", "ValueError: the same cause"),
        TestResult("fourth", 1, "failed", "ValueError: the same cause")])
    text, score = render(result, 4)
    assert score == 2
    assert text.count("ValueError: the same cause") == 1
    assert text.count("(the same as above)") == 1  # the fourth test only, not the passed ones


@pytest.mark.parametrize("rounds", [3, 5])
def test_timing_rounds_stop_only_when_the_median_is_decided(rounds):
    """`until_decided` measures fewer rounds only when the rest cannot change the verdict:
    over every pattern of passing and failing rounds, its median passes exactly when the
    median of all the rounds does, and a unanimous start stops at a majority."""
    import itertools
    import statistics

    from grader.student import until_decided

    line = 1.0
    for pattern in itertools.product([0.5, 0.9, 1.1, 2.0], repeat=rounds):
        measured = until_decided(lambda i, p=pattern: p[i], rounds, lambda v: v <= line)
        assert list(pattern[:len(measured)]) == measured
        assert (statistics.median(measured) <= line) == (statistics.median(pattern) <= line), pattern
        if all(v <= line for v in pattern[:rounds // 2 + 1]) or all(v > line for v in pattern[:rounds // 2 + 1]):
            assert len(measured) == rounds // 2 + 1


def test_a_judge_run_past_its_limit_is_stopped(tmp_path):
    """The judge's process (a fork of the preloaded server, or a plain one) is killed at the
    suite limit and reported as such; a run that ends gives pytest's own exit status."""
    import os
    import time

    from grader.judge import _run_pytest

    (tmp_path / "test_slow.py").write_text("import time\n\ndef test_sleeps():\n    time.sleep(60)\n")
    (tmp_path / "test_quick.py").write_text("def test_fails():\n    assert False\n")
    env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    for preloaded in (True, False):
        start = time.monotonic()
        status, log = _run_pytest(["-q", "-p", "no:cacheprovider", str(tmp_path / "test_slow.py")], env, 3.0,
                                  preloaded)
        assert status is None and "exceeded 3.0 s" in log and time.monotonic() - start < 30
        status, log = _run_pytest(["-q", "-p", "no:cacheprovider", str(tmp_path / "test_quick.py")], env, 60.0,
                                  preloaded)
        assert status == 1 and "1 failed" in log, log


def test_kept_verdicts_are_trusted_only_whole_and_only_for_the_same_suites(tmp_path, monkeypatch):
    """A folder of verdicts (grader/autograde.py, kept across machines with --verdicts):
    a file is keyed by the code and by the suites' text, is written whole, and anything
    unreadable in it (cut short, malformed, other suites, an unknown status) reads as no
    verdict, which costs a new judging and nothing else."""
    from dataclasses import asdict

    from grader import judge
    from grader.judge import JUDGED_ENV, SuiteResult, TestResult

    monkeypatch.setattr(judge, "SUITES_DIR", tmp_path / "suites")
    (tmp_path / "suites" / "ch01_why_optimize").mkdir(parents=True)
    suite_file = tmp_path / "suites" / "ch01_why_optimize" / "test_roi.py"
    suite_file.write_text("def test_one(student): pass\n")
    monkeypatch.setenv(JUDGED_ENV, str(tmp_path))
    cells, suites = [{"name": "'x'", "source": "x = 1"}], ["ch01_why_optimize/roi"]
    path = judge._judged_path(cells, suites, "ch01_why_optimize", "nb.ipynb")
    assert path.parent == tmp_path
    assert judge._judged_path([{"name": "'x'", "source": "x = 2"}], suites, "ch01_why_optimize", "nb.ipynb") != path
    suite_file.write_text("def test_one(student): assert False\n")
    assert judge._judged_path(cells, suites, "ch01_why_optimize", "nb.ipynb") != path, "a suite edited"

    results = {suites[0]: SuiteResult(suites[0], [TestResult("one", 2.0, "passed", seconds=0.1)])}
    judge._keep_verdicts(path, results)
    assert judge._kept_verdicts(path, suites) == results
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == [path.name], "no file left half written"
    record = asdict(results[suites[0]].tests[0])
    for text in ["", '{"ch01_why_optimize/roi": [{"name": "one", "po', "[]", "null",
                 json.dumps({"ch01_why_optimize/other": [record]}),
                 json.dumps({suites[0]: [record], "ch01_why_optimize/other": [record]}),
                 json.dumps({suites[0]: [dict(record, status="full marks")]}),
                 json.dumps({suites[0]: [dict(record, points="2")]}),
                 json.dumps({suites[0]: [dict(record, forged=True)]}),
                 json.dumps({suites[0]: record})]:
        path.write_text(text)
        assert judge._kept_verdicts(path, suites) is None, text
    path.write_bytes(b"\xff\xfe")
    assert judge._kept_verdicts(path, suites) is None
    path.unlink()
    assert judge._kept_verdicts(path, suites) is None
