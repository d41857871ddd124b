"""The judge: runs hidden suites (pytest files) against a student's code.

`run_suites` is the entry point. It runs pytest in a separate, trusted process (forked
from a server that preloads what judges import, `_run_pytest`) with this module as a
plugin; each test gets the `student` fixture: the student's code loaded afresh in a
worker process (grader/student.py). The plugin records, per test, the points
and one of the statuses below, and writes them as JSON.

Statuses: passed, failed, timeout, crashed, blocked (hardware absent: the test leaves
the denominator), error (the grader itself failed; never the student's fault).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

import course_config
from grader.sandbox import bubblewrap
from grader.student import StudentError, WorkerCrashed, WorkerPool, WorkerTimeout, cap

SUITES_DIR = Path(__file__).parent / "suites"
STATUSES = ("passed", "failed", "timeout", "crashed", "blocked", "error")


@dataclass
class TestResult:
    name: str  # the test's one-line, student-facing description
    points: float
    status: str
    message: str = ""
    seconds: float = 0.0
    leaderboard: dict | None = None  # {"metric", "value", "unit"}: a number the suite ranks the class by

    @property
    def earned(self) -> float:
        return self.points if self.status == "passed" else 0.0


@dataclass
class SuiteResult:
    suite: str  # "<chapter>/<grade_id>"
    tests: list[TestResult] = field(default_factory=list)

    @property
    def available(self) -> float:
        """Points that count: blocked tests leave the denominator."""
        return sum(t.points for t in self.tests if t.status != "blocked")

    @property
    def earned(self) -> float:
        return sum(t.earned for t in self.tests)

    @property
    def fraction(self) -> float:
        return self.earned / self.available if self.available else 0.0


def suite_path(suite: str) -> Path:
    chapter, _, name = suite.partition("/")
    return SUITES_DIR / chapter / f"test_{name}.py"


JUDGED_ENV = "GRADER_JUDGED_DIR"  # a folder of verdicts already reached (grader/autograde.py)


def _judged_path(cells: list[dict], suites: list[str], chapter: str, filename: str) -> Path | None:
    """Where the verdicts on exactly this code are kept while a class is graded: the
    parallel judging phase (or a shard of it, on another machine) writes them, nbgrader's
    serial autograde reads them. The key is everything a verdict depends on: the code,
    the file name its tracebacks show, the text of the chapter's suites and their helper
    modules, and the course's limits (course_config.py), so a folder kept across an edit
    of any of them is never read stale."""
    folder = os.environ.get(JUDGED_ENV)
    if not folder:
        return None
    judged_by = [_digest(p) for p in sorted((SUITES_DIR / chapter).glob("*.py"))]  # suites and helpers
    judged_by.append(_digest(course_config.ROOT / "course_config.py"))
    key = hashlib.sha256(json.dumps([chapter, suites, filename, cells, judged_by], sort_keys=True).encode())
    return Path(folder) / f"{key.hexdigest()}.json"


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _kept_verdicts(path: Path, suites: list[str]) -> dict[str, SuiteResult] | None:
    """The verdicts kept at `path`, or None where there are none to trust: a missing,
    truncated or malformed file (a shard killed while writing, a disk error) costs only a
    new judging of that code, never a score."""
    try:
        data = json.loads(path.read_text())
        results = {s: SuiteResult(s, [TestResult(**t) for t in data[s]]) for s in suites}
    except (OSError, ValueError, TypeError, KeyError):  # ValueError: bad JSON or UTF-8
        return None
    sound = set(data) == set(suites) and all(
        isinstance(t.name, str) and isinstance(t.message, str) and t.status in STATUSES
        and isinstance(t.points, (int, float)) and isinstance(t.seconds, (int, float))
        for r in results.values() for t in r.tests)
    return results if sound else None


def _keep_verdicts(path: Path, results: dict[str, SuiteResult]) -> None:
    """Write the verdicts whole or not at all (a new file renamed into place): a reader,
    perhaps on another machine, sees the old state or the new, never half a file."""
    text = json.dumps({s: [asdict(t) for t in r.tests] for s, r in results.items()})
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".writing-", suffix=".json",
                                     delete=False) as f:  # mode 0600
        f.write(text)
    os.replace(f.name, path)


def run_suites(cells: list[dict], suites: list[str], *, chapter: str, filename: str = "notebook",
               until_first_failure: bool = False) -> dict[str, SuiteResult]:
    """The verdicts, judged once: see `_judge`. `until_first_failure` (for proving negative
    controls, never for grading) stops the run at the first test that fails; the tests
    after it are recorded as not run. Only then may a suite be narrowed to one of its
    tests, "chapter/suite::test_name": the test a control is known to fail."""
    if until_first_failure:
        return _judge(cells, suites, chapter=chapter, filename=filename, maxfail=1)
    assert not any("::" in s for s in suites), "grading runs whole suites"
    kept = _judged_path(cells, suites, course_config.chapter(chapter).slug, filename)
    if kept is not None and (results := _kept_verdicts(kept, suites)) is not None:
        return results
    results = _judge(cells, suites, chapter=chapter, filename=filename)
    if kept is not None:
        _keep_verdicts(kept, results)
    return results


def _judge(cells: list[dict], suites: list[str], *, chapter: str, filename: str,
           maxfail: int = 0) -> dict[str, SuiteResult]:
    """Grade the student's code cells against each named suite, out of process.

    The judge's pytest process writes its records into a folder of this process's own
    that no sandbox can see; a run that did not end as pytest ends (0: all passed, 1: some
    failed) is the grader's error, never a score, and every test collected from the suite
    files gets a verdict: one without a record is an error. The judge's own log (which
    may quote suite code) goes to the instructors' log, never into a message."""
    ch = course_config.chapter(chapter)
    bubblewrap.check()  # refuse here, clearly, rather than in every test
    selected = [s.partition("::") for s in suites]  # (suite, "::" or "", test or "")
    suites = list(dict.fromkeys(suite for suite, _, _ in selected))
    results: dict[str, SuiteResult] = {s: SuiteResult(s) for s in suites}
    missing = [s for s in suites if not suite_path(s).is_file()]
    for s in missing:
        results[s].tests.append(TestResult("hidden suite present", 0.0, "error",
                                           "a hidden suite is missing: tell the instructors"))
    present = [s for s in suites if s not in missing]
    if not present:
        return results
    with tempfile.TemporaryDirectory(prefix="grader-judge-") as tmp:
        source_file, results_file = Path(tmp) / "student_cells.json", Path(tmp) / "results.json"
        source_file.write_text(json.dumps(cells))
        # Only the judge's own plugin: the environment's (nbval, xdist, anyio, hypothesis)
        # would cost seconds of imports in every run and add nothing.
        env = dict(os.environ, PYTHONPATH=str(course_config.ROOT), PYTHONDONTWRITEBYTECODE="1",
                   PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
        args = [
            "-q", "-p", "grader.judge", "-p", "no:cacheprovider",
            "--assert=plain", "--no-header", "-o", "addopts=", "-o", "filterwarnings=",
            f"--student-source={source_file}", f"--student-filename={filename}",
            f"--results={results_file}", f"--chapter={ch.slug}", f"--maxfail={maxfail}",
            *(f"{suite_path(suite)}{sep}{test}" for suite, sep, test in selected if suite in present),
        ]
        status, log = _run_pytest(args, env, course_config.GRADING.suite_timeout_s,
                                  preloaded="torch" in ch.worker_imports)
        recorded = json.loads(results_file.read_text()) if results_file.exists() else {}
    if status not in (0, 1):
        print(f"grader: the judge's run of {', '.join(present)} ended with status {status}:\n{log}",
              file=sys.stderr)
    for s in present:
        tests = recorded.get(s)
        if status not in (0, 1) or not tests:
            results[s].tests.append(TestResult("hidden suite ran", 0.0, "error",
                                               "the grader failed on this suite (not your code's "
                                               "fault): the instructors have its log"))
        else:
            results[s].tests.extend(TestResult(**t) for t in tests)
    return results


# The judge's own process is forked from a server that has imported what the judges of
# the torch chapters import (pytest, torch, transformers: seconds of CPU per run
# otherwise). Each run is a fresh fork of that server, which itself never runs a suite or
# a student's code, so no run sees another's state; it holds trusted code only. Its
# socket is a 0600 file in this process's private temp folder on the host: no sandbox
# mounts the host's /tmp, and sandboxed code runs as another uid in another net namespace.
_PRELOAD = ["pytest", "numpy", "torch", "transformers", "transformers.models.llama.modeling_llama",
            "llmopt.engine", "llmopt.models", "grader.judge"]
_servers = None


def _forkserver():
    global _servers
    if _servers is None:
        import multiprocessing

        _servers = multiprocessing.get_context("forkserver")
        _servers.set_forkserver_preload(_PRELOAD)
    return _servers


def _pytest_process(args: list[str], env: dict, log_path: str) -> None:
    """In the forked judge process: the environment and output of a fresh `python -m
    pytest`, then pytest itself; exits with pytest's status."""
    code = 3
    try:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(course_config.ROOT)
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        code = int(pytest.main(args))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _run_pytest(args: list[str], env: dict, timeout_s: float, preloaded: bool = True) -> tuple[int | None, str]:
    """pytest with `args` in the judge's own process: (its exit status, or None after
    `timeout_s`; the tail of its output). `preloaded`: forked from the server (for the
    chapters that import torch); else a plain `python -m pytest`, which starts in a
    fraction of a second when nothing heavy is needed (chapter 1, `grader check` on it)."""
    with tempfile.NamedTemporaryFile(prefix="grader-judge-", suffix=".log") as log:
        if not preloaded:
            try:
                with open(log.name, "w") as out:
                    status = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=course_config.ROOT,
                                            env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s).returncode
            except subprocess.TimeoutExpired:
                return None, f"the whole suite run exceeded {timeout_s} s"
            return status, Path(log.name).read_text(errors="replace")[-6000:]
        process = _forkserver().Process(target=_pytest_process, args=(args, env, log.name))
        # A child of the server would first re-run the caller's script as `__mp_main__`
        # (multiprocessing's spawn preparation), i.e. the whole grading run again, when the
        # script lacks a main guard: a module run with -m, pytest or JupyterLab is
        # re-imported by name, harmlessly; a script is not re-run at all.
        main = sys.modules["__main__"]
        script = main.__dict__.pop("__file__", None) if getattr(main, "__spec__", None) is None else None
        try:
            process.start()
        finally:
            if script is not None:
                main.__file__ = script
        process.join(timeout_s)
        if process.is_alive():
            process.kill()
            process.join()
            return None, f"the whole suite run exceeded {timeout_s} s"
        return process.exitcode, Path(log.name).read_text(errors="replace")[-6000:]


# ---------------------------------------------------------------------------------------
# The pytest plugin (loaded in the judge process with `-p grader.judge`)
# ---------------------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grader")
    group.addoption("--student-source", help="JSON file with the student's code cells")
    group.addoption("--student-filename", default="<student>", help="name shown in tracebacks")
    group.addoption("--results", help="where to write the per-test results as JSON")
    group.addoption("--chapter", help="chapter slug, for its limits")


def _hypothesis_profile(chapter: str | None) -> None:
    """Property tests in suites: the same examples on every run (P4), no example database
    written anywhere, and no shrinking: a failing submission is reported at once with
    the example that failed, instead of spending its time budget on a minimal one.
    Only for a chapter whose suites use hypothesis (importing it takes seconds)."""
    if not chapter or not any("hypothesis" in p.read_text() for p in (SUITES_DIR / chapter).glob("*.py")):
        return
    try:
        from hypothesis import Phase, settings
    except ImportError:
        return
    settings.register_profile("grader", derandomize=True, database=None, deadline=None,
                              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    settings.load_profile("grader")


def pytest_configure(config: pytest.Config) -> None:
    _hypothesis_profile(config.getoption("chapter"))
    config.addinivalue_line("markers", "points(n): points of this test (default 1)")
    config.addinivalue_line("markers", "timeout(seconds): wall-time limit of this test")
    config.addinivalue_line("markers", "needs(device): 'cuda' tests are blocked without a GPU")
    config.addinivalue_line("markers", "fresh_worker: run in a worker no other test has used")
    config._grader_records = {}  # suite -> list of TestResult dicts


@pytest.fixture(scope="session")
def _worker_pool(pytestconfig: pytest.Config):
    ch = course_config.chapter(pytestconfig.getoption("chapter"))
    pool = WorkerPool(ch.worker_memory_mb, course_config.GRADING.worker_output_bytes,
                      course_config.GRADING.worker_threads, ch.worker_imports)
    yield pool
    pool.close()


@pytest.fixture
def student(request: pytest.FixtureRequest, _worker_pool: WorkerPool):
    """The student's code, loaded in a fresh worker; the test's clock starts now."""
    config = request.config
    fresh = request.node.get_closest_marker("fresh_worker") is not None
    cells = json.loads(Path(config.getoption("student_source")).read_text())
    yield _worker_pool.student(str(request.node.fspath), fresh, cells,
                               config.getoption("student_filename"), _time_limit(request))


@pytest.fixture
def baseline(request: pytest.FixtureRequest, _worker_pool: WorkerPool):
    """A worker that never runs student code: what a test compares the student with
    (library baselines, device calibration) is computed there."""
    yield _worker_pool.baseline(_time_limit(request))


def _time_limit(request: pytest.FixtureRequest) -> float:
    """The test's wall time: its `timeout` marker, else the chapter's default."""
    marker = request.node.get_closest_marker("timeout")
    return float(marker.args[0]) if marker else course_config.chapter(request.config.getoption("chapter")).test_timeout_s


@pytest.fixture(scope="session")
def reference(pytestconfig: pytest.Config):
    """The instructors' solution of the chapter, as a namespace: the setup and solution
    cells of source/<chapter>/*.ipynb, run once in the judge (trusted code). Suites compare
    a student's policy with it instead of keeping a second copy of the solution."""
    import linecache
    import types

    import nbformat

    from grader.notebook import student_cells

    ch = course_config.chapter(pytestconfig.getoption("chapter"))
    namespace: dict = {"__name__": f"reference_{ch.slug}"}
    for name in ch.notebooks:
        path = course_config.ROOT / "source" / ch.slug / f"{name}.ipynb"
        for cell in student_cells(nbformat.read(path, as_version=4)):  # trusted: our own
            where = f"{path.name}, cell {cell['name']}"
            # registered as the worker does, so that @triton.jit finds the source
            lines = cell["source"].splitlines(keepends=True)
            linecache.cache[where] = (len(cell["source"]), None, lines, where)
            exec(compile(cell["source"], where, "exec"), namespace)
    return types.SimpleNamespace(**namespace)


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("needs")
    if marker and marker.args[0] == "cuda":
        import torch

        if not torch.cuda.is_available():
            pytest.skip("blocked: needs a CUDA GPU, and this machine has none")


def _suite_of(item: pytest.Item) -> str:
    path = Path(str(item.fspath))
    return f"{path.parent.name}/{path.stem.removeprefix('test_')}"


def _points(item: pytest.Item) -> float:
    marker = item.get_closest_marker("points")
    return float(marker.args[0]) if marker else 1.0


def _describe(item: pytest.Item) -> str:
    doc = getattr(getattr(item, "function", None), "__doc__", None)
    name = (doc or item.originalname).strip().splitlines()[0]
    callspec = getattr(item, "callspec", None)
    return f"{name} [{callspec.id}]" if callspec else name


def _worker_failure(exc: BaseException | None) -> BaseException | None:
    """The WorkerTimeout or WorkerCrashed behind `exc`, also when a library (hypothesis,
    an exception group) wrapped it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (WorkerTimeout, WorkerCrashed)):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                found = _worker_failure(inner)
                if found is not None:
                    return found
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return None


def _message(exc: BaseException) -> str:
    """Student-facing text for a failure, capped: never the judge's traceback or test source."""
    if isinstance(exc, StudentError) and exc.remote_type == "CellLoadError":
        return cap(str(exc))  # the cell's error, once, without a traceback
    if isinstance(exc, StudentError):
        tail = exc.remote_traceback.strip().splitlines()[-6:]
        return cap(f"your code raised {exc.remote_type}: {exc}\n" + "\n".join(tail))
    if isinstance(exc, (WorkerTimeout, WorkerCrashed, AssertionError)):
        return cap(str(exc) or "a hidden check failed")
    if isinstance(exc, RuntimeError) and "grading worker failed to start" in str(exc):
        return cap(str(exc))
    return f"the grader failed in this test ({type(exc).__name__}; not your code's fault): tell the instructors"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    records = item.config._grader_records.setdefault(_suite_of(item), {})
    points = _points(item)
    previous = records.get(item.nodeid)
    if previous and previous["status"] != "passed":
        return  # keep the first failure (e.g. a teardown after a failed call)
    status, message = "passed", ""
    if report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        status, message = "blocked", reason.removeprefix("Skipped: ")
    elif report.failed:
        exc = call.excinfo.value if call.excinfo else None
        exc = _worker_failure(exc) or exc
        if isinstance(exc, WorkerTimeout):
            status = "timeout"
        elif isinstance(exc, WorkerCrashed):
            status = "crashed"
        elif report.when != "call" and not isinstance(exc, StudentError):
            status = "failed" if isinstance(exc, AssertionError) else "error"
        else:
            status = "failed"
        message = _message(exc) if exc is not None else "a hidden check failed"
    elif report.when != "call" and previous is not None:
        return
    if report.when == "call" or status != "passed":
        records[item.nodeid] = asdict(TestResult(_describe(item), points, status, message,
                                                 round(report.duration, 3), _leaderboard(item)))


def _leaderboard(item: pytest.Item) -> dict | None:
    """The number a suite recorded for the class ranking, `record_property("leaderboard",
    {"metric": str, "value": float, "unit": str})`: suites run here, in the judge, and
    compute it from the replay, so it is the judge's number."""
    return leaderboard_entry(dict(item.user_properties).get("leaderboard"))


def leaderboard_entry(board) -> dict | None:
    """A leaderboard record as the judge writes it and the ranking reads it back: a finite
    value, a short metric name and unit; anything else is dropped (None)."""
    try:
        value = float(board["value"])
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return {"metric": str(board["metric"])[:80], "value": value, "unit": str(board.get("unit", ""))[:20]}
    except (TypeError, KeyError, ValueError):
        return None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    config._grader_collected = list(items)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Write one record per collected test, in collection order: a test that never
    reported (the run was cut short) is an error, not missing from the total."""
    path = session.config.getoption("results")
    if not path:
        return
    records = session.config._grader_records
    out: dict[str, list] = {}
    for item in getattr(session.config, "_grader_collected", []):
        suite = records.get(_suite_of(item), {})
        record = suite.get(item.nodeid) or asdict(TestResult(
            _describe(item), _points(item), "error", "this test did not run to the end"))
        out.setdefault(_suite_of(item), []).append(record)
    Path(path).write_text(json.dumps(out, indent=1))
