"""End to end: the demo class through nbgrader's real autograde with the judge plugged
in, in a scratch course directory; then the instructor CLI on single notebooks."""

import json
import re
import shutil
import subprocess
import sys
from html import unescape

import nbformat
import pytest

import course_config
from course_config import ROOT
from grader.demo import DEMO_CHAPTERS, grade_demo_class, solved
from grader.notebook import graded_suites, source_notebook

CHAPTER = DEMO_CHAPTERS[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    course_dir = tmp_path_factory.mktemp("course")
    rows = grade_demo_class(course_dir)
    return course_dir, {(r["student"], r["chapter"]): r for r in rows}


def test_demo_class_scores(demo):
    _, table = demo
    row = lambda student, chapter=CHAPTER: table[(student, chapter.slug)]  # noqa: E731
    full = row("reference")["max_score"]
    assert full > 0
    assert row("reference")["score"] == full, "the reference solution gets full marks"
    assert row("untouched")["score"] == 0, "the release notebook as handed out gets zero"
    assert 0 < row("partly_wrong")["score"] < full, "one wrong function costs some marks, not all"
    assert 0 < row("never_returns")["score"] < full, "a hang costs only the tests it touches"
    assert row("exits_at_import")["score"] == 0, "code that exits when loaded earns nothing"
    assert row("deleted_cells")["score"] == full, "deleted test and setup cells are restored and graded"
    points = {grade_id: p for grade_id, _, p in graded_suites(source_notebook(CHAPTER.slug, CHAPTER.notebooks[0])[0], CHAPTER.slug)}
    assert row("one_syntax_error")["score"] == full - points["q_roi_claim"], "a typo costs only its exercise"


def test_partial_work_gets_exactly_its_points(demo):
    """One exercise done earns that cell's points; a renamed notebook is graded as its
    chapter's."""
    _, table = demo
    points = {grade_id: p for grade_id, _, p in graded_suites(source_notebook(CHAPTER.slug, CHAPTER.notebooks[0])[0], CHAPTER.slug)}
    row = lambda student: table[(student, CHAPTER.slug)]  # noqa: E731
    assert row("roi_only")["score"] == points["roi"]
    assert row("renamed_chapter")["score"] == points["roi"]


def test_check_reports_exactly_the_points_of_the_one_exercise_done(tmp_path):
    """`grader check` on a copy saved under another name (as JupyterLab's "Duplicate"
    does), with one exercise written: graded as the chapter's notebook, that cell's points."""
    name = CHAPTER.notebooks[0]
    release = nbformat.read(ROOT / "release" / CHAPTER.slug / f"{name}.ipynb", as_version=4)
    source = source_notebook(CHAPTER.slug, name)[0]
    path = tmp_path / CHAPTER.slug / f"{name}-Copy1.ipynb"
    path.parent.mkdir()
    nbformat.write(solved(release, source, only="roi_solution"), path)
    run = _check(path)
    points = {grade_id: p for grade_id, _, p in graded_suites(source, CHAPTER.slug)}
    assert f"graded as {CHAPTER.slug}/{name}.ipynb" in run.stdout
    expected = f"-Copy1.ipynb: {points['roi']:g} / {sum(points.values()):g} points"
    assert expected in run.stdout, run.stdout[-3000:] + run.stderr[-2000:]


def test_check_takes_points_from_the_instructors_notebook(tmp_path):
    nb = nbformat.read(ROOT / "release" / CHAPTER.slug / f"{CHAPTER.notebooks[0]}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.metadata["nbgrader"]["points"] = 100
    path = tmp_path / CHAPTER.slug / f"{CHAPTER.notebooks[0]}.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, path)
    total = sum(p for _, _, p in graded_suites(source_notebook(CHAPTER.slug, CHAPTER.notebooks[0])[0], CHAPTER.slug))
    assert f": 0 / {total:g} points" in _check(path).stdout


def test_feedback_shows_verdicts_but_never_hidden_tests(demo):
    course_dir, _ = demo
    suites = list((ROOT / "grader" / "suites").rglob("test_*.py"))
    internals = [*(ROOT / "grader").glob("*.py"), *(ROOT / "grader" / "sandbox").glob("*.py")]
    suite_lines = {ln.strip() for p in suites + internals for ln in p.read_text().splitlines()
                   if len(ln.strip()) > (30 if p in suites else 40)  # internals hold more generic lines
                   and not ln.strip().startswith(("import", "from", "#", '"""', "def test_", "@pytest"))}
    pages = list((course_dir / "feedback").rglob("*.html"))
    graded = {(student, chapter) for student, chapter in demo[1]}
    assert len(pages) == sum(len(course_config.chapter(ch).notebooks) for _, ch in graded)
    for page in pages:
        html = page.read_text()
        assert "Hidden tests (" in html, f"{page}: the judge's verdict is missing"
        text = unescape(re.sub(r"<[^>]+>", "", html))  # what a reader sees, highlighting removed
        student, chapter = page.parts[-3], page.parts[-2]
        submitted = "\n".join(cell.source for p in (course_dir / "submitted" / student / chapter).glob("*.ipynb")
                              for cell in nbformat.read(p, as_version=4).cells)
        # The student's own code may coincide with a hidden line (an oracle's formula): not a leak.
        leaked = [ln for ln in suite_lines if ln in text and ln not in submitted]
        assert not leaked, f"{page} shows hidden suite text: {leaked[:2]}"
    untouched = next(p for p in pages if "untouched" in p.parts).read_text()
    assert "BEGIN SOLUTION" not in untouched and "tokens_per_hour" not in untouched


def test_hang_and_exit_are_named_in_the_autograded_notebooks(demo):
    course_dir, _ = demo
    hang = (course_dir / "autograded" / "never_returns" / CHAPTER.slug).glob("*.ipynb")
    assert "timeout" in "".join(p.read_text() for p in hang)
    exits = "".join(p.read_text() for p in (course_dir / "autograded" / "exits_at_import" / CHAPTER.slug).glob("*.ipynb"))
    assert "crashed" in exits and "exited with status 3" in exits


def test_report_cli_prints_the_table_and_writes_csv(demo, tmp_path):
    course_dir, table = demo
    csv_path = tmp_path / "grades.csv"
    run = subprocess.run([sys.executable, "-m", "grader", "report", "--course-dir", str(course_dir),
                          "--csv", str(csv_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "exits_at_import" in run.stdout and "percent" in run.stdout
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "student,chapter,score,max_score,percent" and len(lines) == len(table) + 1


def test_regrading_via_the_cli_gives_the_same_scores(demo):
    """P4: grading a submission twice gives the same correctness scores."""
    course_dir, table = demo
    run = subprocess.run([sys.executable, "-m", "grader", "autograde", CHAPTER.slug, "--student", "partly_wrong",
                          "--course-dir", str(course_dir)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:]
    from grader.report import class_table

    again = {(r["student"], r["chapter"]): r["score"] for r in class_table(course_dir)}
    assert again[("partly_wrong", CHAPTER.slug)] == table[("partly_wrong", CHAPTER.slug)]["score"]


def _cell_scores(course_dir) -> dict:
    """(student, notebook, grade_id) -> score, for every graded cell in the gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}", course_config.COURSE_ID) as gradebook:
        return {(sub.student.id, nb.name, grade.name): grade.score
                for sub in gradebook.find_assignment(CHAPTER.slug).submissions
                for nb in sub.notebooks for grade in nb.grades}


def _verdict_file(course_dir, student, verdicts, monkeypatch):
    """The verdicts file the judge keeps for `student`'s submission in `verdicts`."""
    from grader.judge import JUDGED_ENV, _judged_path
    from grader.notebook import student_cells

    name = CHAPTER.notebooks[0]
    nb = nbformat.read(course_dir / "submitted" / student / CHAPTER.slug / f"{name}.ipynb", as_version=4)
    source = source_notebook(CHAPTER.slug, name, course_dir)[0]
    monkeypatch.setenv(JUDGED_ENV, str(verdicts))
    path = _judged_path(student_cells(nb, source), [s for _, s, _ in graded_suites(source, CHAPTER.slug)],
                        CHAPTER.slug, f"{name}.ipynb")
    monkeypatch.delenv(JUDGED_ENV)
    return path


def test_sharded_grading_then_merge_gives_the_unsharded_scores(demo, tmp_path, monkeypatch):
    """Grading over machines, here two processes at once: `--shard I/2` judges every
    second student into one verdicts folder and writes no gradebook; the merge (the same
    command without --shard) writes the gradebook with every score of the unsharded run,
    judging again only what it cannot trust in the folder (a verdict lost, one cut short).
    Four students of the demo class, two of whose verdicts are spoiled: containment and
    the other paths are proven above, sharding does not touch them (`never_returns` alone
    would spin a core for half a minute)."""
    from nbgrader.api import Gradebook

    from grader.report import class_table

    unsharded, table = demo
    kept_students = {"reference", "partly_wrong", "roi_only", "untouched"}
    left_out = [student for student, _ in table if student not in kept_students]
    course_dir, verdicts = tmp_path / "course", tmp_path / "verdicts"
    for part in ("source", "release", "submitted"):
        shutil.copytree(unsharded / part, course_dir / part, ignore=shutil.ignore_patterns(*left_out))
    shutil.copyfile(unsharded / "gradebook.db", course_dir / "gradebook.db")
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}", course_config.COURSE_ID) as gradebook:
        for student, _ in table:  # the chapter stays released; every score must come anew
            gradebook.remove_submission(CHAPTER.slug, student)
    students = sorted(p.name for p in (course_dir / "submitted").iterdir())
    autograde = [sys.executable, "-m", "grader", "autograde", CHAPTER.slug, "--course-dir", str(course_dir),
                 "--verdicts", str(verdicts)]
    spoiled, lost = (_verdict_file(course_dir, s, verdicts, monkeypatch) for s in ("roi_only", "untouched"))
    verdicts.mkdir(mode=0o700)
    spoiled.write_text('{"ch01_why_optimize/roi": [{"name": "cut sh')  # a file cut short
    shards = [subprocess.Popen([*autograde, "--shard", f"{i}/2"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True) for i in range(2)]
    logs = [shard.communicate(timeout=300)[0] for shard in shards]
    assert [shard.returncode for shard in shards] == [0, 0], logs
    assert sum(int(re.search(r"judged (\d+) submissions", log).group(1)) for log in logs) == len(students)
    assert class_table(course_dir) == [] and not (course_dir / "autograded").exists(), "shards write no grades"
    assert json.loads(spoiled.read_text()), "a spoiled verdict is judged anew"

    lost.unlink()  # as if its shard's machine had died
    kept = {p: p.stat().st_mtime_ns for p in verdicts.glob("*.json")}
    merge = subprocess.run(autograde, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert merge.returncode == 0, merge.stdout[-3000:] + merge.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept, "the merge judged again a verdict it had"
    assert lost.is_file(), "the merge judges what no shard left"
    expected = [row for row in class_table(unsharded) if row["student"] in kept_students]
    assert [row["student"] for row in expected] == students and class_table(course_dir) == expected
    assert _cell_scores(course_dir) == {k: v for k, v in _cell_scores(unsharded).items() if k[0] in kept_students}


def test_shards_split_the_class_and_verdicts_stay_out_of_the_sandbox(tmp_path):
    from grader.autograde import autograde, shard_of

    folders = [tmp_path / "submitted" / f"student{i}" / CHAPTER.slug for i in range(10)]
    shards = [shard_of(list(reversed(folders)), (i, 3)) for i in range(3)]
    assert sorted(sum(shards, [])) == folders and [len(s) for s in shards] == [4, 3, 3]
    with pytest.raises(ValueError, match="sandbox"):
        autograde(CHAPTER.slug, tmp_path, verdicts=ROOT / "models" / "verdicts")
    assert not (ROOT / "models" / "verdicts").exists()
    run = subprocess.run([sys.executable, "-m", "grader", "autograde", CHAPTER.slug, "--course-dir", str(tmp_path),
                          "--shard", "0/3"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "--verdicts" in run.stderr


def _check(path):
    return subprocess.run([sys.executable, "-m", "grader", "check", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


def test_check_cli_on_release_and_solution_notebooks():
    for notebook in CHAPTER.notebooks:
        release = _check(ROOT / "release" / CHAPTER.slug / f"{notebook}.ipynb")
        assert release.returncode == 1 and f"{notebook}.ipynb: 0 / " in release.stdout, release.stdout[-2000:]
        assert "NotImplementedError" in release.stdout, "the table says why each test failed"
        solution = _check(ROOT / "solutions" / CHAPTER.slug / f"{notebook}.ipynb")
        assert solution.returncode == 0, solution.stdout[-3000:] + solution.stderr[-3000:]


def test_check_cli_on_a_malformed_notebook(tmp_path):
    broken = tmp_path / CHAPTER.slug / "broken.ipynb"
    broken.parent.mkdir()
    broken.write_text('{"cells": [ this is not json')
    run = _check(broken)
    assert run.returncode == 2 and "not a readable course notebook" in run.stderr
