"""The committed notebooks are what the build makes of their sources, the release
notebooks hold nothing a student must not see (property P1, secrecy), and their stubs
raise only when called."""

import json
import os
import re
import subprocess
import sys

import nbformat
import pytest

import course_config
from course_config import ROOT
from grader.course import notebook_from_twin

NOTEBOOKS = [(ch, nb) for ch in course_config.ACTIVE_CHAPTERS for nb in ch.notebooks]
IDS = [f"{c.slug}/{n}" for c, n in NOTEBOOKS]


@pytest.mark.parametrize("chapter, notebook", NOTEBOOKS, ids=IDS)
def test_source_notebook_is_built_from_its_twin(chapter, notebook):
    committed = nbformat.read(ROOT / "source" / chapter.slug / f"{notebook}.ipynb", as_version=4)
    assert committed == notebook_from_twin(chapter, notebook), (
        f"source/{chapter.slug}/{notebook}.ipynb is stale: run `make release`")


@pytest.mark.parametrize("chapter, notebook", NOTEBOOKS, ids=IDS)
def test_every_chapter_and_section_has_its_chinese_title(chapter, notebook):
    nb = nbformat.read(ROOT / "source" / chapter.slug / f"{notebook}.ipynb", as_version=4)
    headings = [ln for c in nb.cells if c.cell_type == "markdown" for ln in c.source.splitlines()
                if ln.startswith("## ") or ln.startswith("# ")]
    assert chapter.title_zh in nb.cells[0].source, "the first cell carries the book's chapter title"
    for heading in headings:
        if heading.startswith("## "):
            has_zh = re.search(r"[\u4e00-\u9fff]", heading)
            follows = any(re.search(r"[\u4e00-\u9fff]", ln) for c in nb.cells for i, ln in
                          enumerate(c.source.splitlines()) if c.source.splitlines()[i - 1:i] == [heading])
            assert has_zh or follows, f"section {heading!r} needs its Chinese title (in it or just below)"


@pytest.mark.parametrize("chapter, notebook", NOTEBOOKS, ids=IDS)
def test_graded_cells_name_their_suites_and_suites_have_cells(chapter, notebook):
    nb = nbformat.read(ROOT / "source" / chapter.slug / f"{notebook}.ipynb", as_version=4)
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"]
    for cell in graded:
        grade_id = cell.metadata["nbgrader"]["grade_id"]
        call = f'grade("{chapter.slug}/{grade_id}")'
        assert call in cell.source, f"test cell {grade_id} must call {call} in its hidden region"
        assert (ROOT / "grader" / "suites" / chapter.slug / f"test_{grade_id}.py").is_file()
    suites = {p.stem.removeprefix("test_") for p in (ROOT / "grader" / "suites" / chapter.slug).glob("test_*.py")}
    assert suites <= {c.metadata["nbgrader"]["grade_id"] for c in graded}, "a suite without a graded cell"


def _release_text(chapter):
    folder = ROOT / "release" / chapter.slug
    return {p.name: p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("chapter", course_config.ACTIVE_CHAPTERS, ids=lambda c: c.slug)
def test_release_holds_no_solution_hidden_test_or_grader_text(chapter):
    files = _release_text(chapter)
    assert files, f"release/{chapter.slug} is empty: run `make release`"
    assert all(name.endswith(".ipynb") for name in files), f"only notebooks are released, got {sorted(files)}"
    text = "\n".join(json.loads(t)["cells"].__repr__() for t in files.values())
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "grade(\"", "from grader"):
        assert marker not in text, f"release/{chapter.slug} contains {marker!r}"
    for notebook in chapter.notebooks:
        source = nbformat.read(ROOT / "source" / chapter.slug / f"{notebook}.ipynb", as_version=4)
        released = nbformat.read(ROOT / "release" / chapter.slug / f"{notebook}.ipynb", as_version=4)
        released_code = {ln.strip() for c in released.cells for ln in c.source.splitlines()}
        leaked = [ln for ln in _solution_region_lines(source) if ln in released_code]
        assert not leaked, f"solution code leaked into release/{chapter.slug}: {leaked[:3]}"
    # A control implements the stubs' signatures, which may span several lines: those
    # lines are the public API the release shows anyway. Bodies are what must not leak.
    stubs = {ln.strip() for name in files for c in nbformat.reads(files[name], as_version=4).cells
             if c.metadata.get("nbgrader", {}).get("solution") for ln in c.source.splitlines()}
    internals = [*(ROOT / "grader").glob("*.py"), *(ROOT / "grader" / "sandbox").glob("*.py")]
    for source_file in [*(ROOT / "grader" / "suites" / chapter.slug).rglob("*.py"), *internals]:
        shortest = 40 if source_file in internals else 30  # internals hold more generic lines
        control = "controls" in source_file.parts
        for line in source_file.read_text().splitlines():
            line = line.strip()
            if control and line in stubs:
                continue
            # signatures are the public API the stubs show too; bodies are what must not leak
            if len(line) > shortest and not line.startswith(("import", "from", "#", '"""', "def ", "class ")):
                assert line not in text, f"grader text ({source_file.name}) leaked into the release: {line!r}"


def _solution_region_lines(nb):
    """Non-trivial lines between BEGIN SOLUTION and END SOLUTION markers."""
    lines, inside = [], False
    for cell in nb.cells:
        for ln in cell.source.splitlines():
            if "BEGIN SOLUTION" in ln or "END SOLUTION" in ln:
                inside = "BEGIN" in ln
            elif inside and len(ln.strip()) > 12:
                lines.append(ln.strip())
    assert lines, "found no solution regions to check"
    return lines


@pytest.mark.parametrize("chapter", course_config.ACTIVE_CHAPTERS, ids=lambda c: c.slug)
def test_release_stubs_fail_nbgrader_validate(chapter, tmp_path):
    """`nbgrader validate --invert` passes only if the release notebook's tests fail. It
    runs the cells nbgrader knows (setup, exercises, tests), as the judge does: graded
    cells never depend on the demonstrations between them (which would only cost time)."""
    for notebook in chapter.notebooks:
        nb = nbformat.read(ROOT / "release" / chapter.slug / f"{notebook}.ipynb", as_version=4)
        nb.cells = [c for c in nb.cells if c.cell_type != "code" or "nbgrader" in c.metadata]
        path = tmp_path / f"{notebook}.ipynb"
        nbformat.write(nb, path)
        run = subprocess.run([sys.executable, "-m", "nbgrader", "validate", "--invert", str(path)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=600)
        output = run.stdout + run.stderr
        assert "Success! The notebook does not pass any tests." in output, output[-3000:]


# Runs in a fresh interpreter: the setup cells change process state (environment
# variables, seeds, matplotlib style) that must not leak into other tests.
_DEFINE_STUDENT_CODE = r"""
import json, sys
import matplotlib
matplotlib.use("Agg")
import nbformat
from grader.notebook import is_student_code
nb = nbformat.read(sys.argv[1], as_version=4)
namespace, failures = {"__name__": "__main__"}, []
for index, cell in enumerate(nb.cells):
    if is_student_code(cell):
        name = cell.metadata.get("nbgrader", {}).get("grade_id") or str(index)
        try:
            exec(compile(cell.source, f"<cell {name}>", "exec"), namespace)
        except BaseException as exc:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
print(json.dumps(failures))
"""


@pytest.mark.parametrize("chapter, notebook", NOTEBOOKS, ids=IDS)
def test_release_stubs_raise_only_when_called(chapter, notebook):
    """The release notebook's setup and solution cells, run in order, define everything
    without raising: each stub sits in a function or method body, never in a class body
    or at top level, so a student who solved only some exercises can run all the cells
    (and the grader can load them) and get partial credit."""
    path = ROOT / "release" / chapter.slug / f"{notebook}.ipynb"
    env = dict(os.environ, COURSE_SMALL="1", MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-c", _DEFINE_STUDENT_CODE, str(path)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    failures = json.loads(run.stdout.strip().splitlines()[-1])
    assert not failures, (f"release/{chapter.slug}/{notebook}.ipynb raises before any stub is called "
                          f"(move the solution markers into the method bodies): {failures}")


@pytest.mark.parametrize("chapter, notebook", NOTEBOOKS, ids=IDS)
def test_solutions_are_executed_and_free_of_hidden_tests(chapter, notebook):
    nb = nbformat.read(ROOT / "solutions" / chapter.slug / f"{notebook}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "solutions/ must be executed: run `make solutions`"
    assert not any(o.get("output_type") == "error" for c in code for o in c.outputs)
    assert "BEGIN HIDDEN TESTS" not in json.dumps(nb) and 'grade("' not in json.dumps(nb)


def test_readme_lists_each_chapter_with_its_status():
    """The README's chapter table says `ready` exactly for the chapters that have notebooks."""
    rows = {line.split("|")[2].strip().split("`")[1]: line.split("|")[4].strip()
            for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().isdigit()}  # the chapter table
    assert set(rows) == {ch.slug for ch in course_config.CHAPTERS}, "one README row per chapter"
    for ch in course_config.CHAPTERS:
        assert rows[ch.slug].startswith("ready") == bool(ch.notebooks), (
            f"README says {rows[ch.slug]!r} for {ch.slug}, which "
            f"{'has' if ch.notebooks else 'has no'} notebooks")


@pytest.mark.parametrize("chapter", course_config.ACTIVE_CHAPTERS, ids=lambda c: c.slug)
def test_solutions_are_built_from_their_source(chapter):
    """solutions/ holds what nbgrader makes of the current source notebook (outputs aside,
    which change with every run): `make course` then has nothing to rebuild."""
    from grader.course import stale_solutions

    stale = stale_solutions(chapter)
    assert not stale, f"solutions/{chapter.slug}/ is stale for {stale}: run `make solutions`"
