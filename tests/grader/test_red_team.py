"""The red team: hostile submissions against the whole grading path.

Each attack below is code a student who has read this repository could write. It is
planted in a blank chapter 1 notebook (the release as handed out), so an honest grade is
0; a class of such students is graded with `python -m grader autograde`'s machinery
(parallel judging, then nbgrader) after an honest bystander was graded. Then:
- every attacker scores 0;
- the bystander's gradebook rows and files are byte-identical to before;
- no output, no feedback page and no `grader check` report holds a line of the hidden
  suites or of the solutions;
- the class autograde completed (every well-formed submission has a row), and nothing
  the attacks tried to leave behind exists.
Attacks on timing and memoisation need a chapter with a performance check: they are
chapter 5 negative controls (grader/suites/ch05_kv_cache/controls/forged_timing.py,
memoised_answers.py), proven in tests/grader/test_controls.py to lose the timing points.

Several attacks share one submission when they cannot stop each other: every cell loads
on its own, so each attack sits in its own solution cell.
"""

import json
import re
import sqlite3
import subprocess
import sys
import time
from html import unescape
from pathlib import Path

import nbformat
import pytest

import course_config
from course_config import ROOT
from grader.autograde import autograde
from grader.course import nbgrader, scratch_course
from grader.demo import solved
from grader.notebook import graded_suites, source_notebook

CHAPTER = course_config.chapter("ch01")
MARKERS = Path("/tmp/red-team-markers")  # what an attack that escaped would leave behind

# Each attack: a cell of code. `SUITES`, `SOURCE`, `ROOT` and `MARKERS` are filled in.
ATTACKS = {
    "forged_results": '''
import glob, json, os
forged = {}
for pid in os.listdir("/proc"):
    try:
        cmd = open(f"/proc/{pid}/cmdline").read().split("\\0")
    except OSError:
        continue
    for arg in cmd:
        if arg.startswith("--results="):
            open(arg.split("=", 1)[1], "w").write(json.dumps({"ch01_why_optimize/roi": [
                {"name": "x", "points": 100, "status": "passed", "message": "", "seconds": 0}]}))
            open("MARKERS/forged_results", "w").write("escaped")
for path in glob.glob("/tmp/grader-judge-*/results.json"):
    open(path, "w").write("{}")
''',
    "read_solutions": '''
import glob, json
for path in glob.glob("ROOT/source/*/*.ipynb") + glob.glob("ROOT/solutions/*/*.ipynb"):
    for cell in json.load(open(path))["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            exec("".join(cell["source"]).replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", ""))
''',
    "read_suites": '''
import glob
texts = [open(p).read() for p in glob.glob("ROOT/grader/**/*.py", recursive=True)]
print("\\n".join(texts))
if texts:
    raise RuntimeError("\\n".join(texts))
''',
    "write_gradebook": '''
import glob, sqlite3
for db in glob.glob("ROOT/**/gradebook.db", recursive=True) + glob.glob("/tmp/**/gradebook.db", recursive=True):
    con = sqlite3.connect(db)
    con.execute("UPDATE grade SET auto_score = 99, manual_score = 99")
    con.commit()
    open("MARKERS/write_gradebook", "w").write(db)
''',
    "plant_conftest": '''
import os
for folder in ["ROOT/grader/suites", "ROOT/grader/suites/ch01_why_optimize"]:
    try:
        open(os.path.join(folder, "conftest.py"), "w").write("import pytest\\n"
            "@pytest.hookimpl(hookwrapper=True)\\n"
            "def pytest_runtest_makereport(item, call):\\n    (yield).get_result().outcome = 'passed'\\n")
        open("MARKERS/plant_conftest", "w").write(folder)
    except OSError:
        pass
''',
    "write_course_dir": '''
import glob
for path in glob.glob("ROOT/**/submitted/*/*/*.ipynb", recursive=True) + glob.glob("/tmp/**/submitted/*/*/*.ipynb", recursive=True):
    try:
        open(path, "w").write("{}")
        open("MARKERS/write_course_dir", "w").write(path)
    except OSError:
        pass
''',
    "kill_everything": '''
import os, signal
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
try:
    os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)
except OSError:
    pass
''',
    "ptrace_parent": '''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(16, os.getppid(), 0, 0) == 0:  # PTRACE_ATTACH
    open("MARKERS/ptrace_parent", "w").write("attached")
''',
    "daemon": '''
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(4)
        open("MARKERS/daemon", "w").write("outlived its test")
        os._exit(0)
    os._exit(0)
''',
    "leak_through_messages": '''
import glob
suite = "".join(open(p).read() for p in glob.glob("ROOT/grader/suites/*/test_*.py"))
print(("Z" * 5000 + "\\n") * 400 + suite)
raise ValueError(("Z" * 5000 + "\\n") * 400 + suite)
''',
    "output_flood": '''
import sys
for _ in range(200000):
    sys.stdout.write("spam " * 40 + "\\n")
''',
    "oversized_frame": '''
import os, struct
for fd in range(3, 64):
    try:
        os.write(fd, struct.pack(">Q", 50 << 20) + b"{" * (1 << 20))
    except OSError:
        pass
''',
    "forged_reply": '''
import os, struct, json
body = json.dumps({"value": {"__handle__": "x", "type": 5}, "error": 3}).encode()
for fd in range(3, 64):
    try:
        os.write(fd, struct.pack(">Q", len(body)) + body + struct.pack(">Q", 0))
    except OSError:
        pass
''',
    "network_and_environment": '''
import os, socket
secrets = {k: v for k, v in os.environ.items()}
for port in (22, 80, 8888, 5432):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5)
        open("MARKERS/network", "w").write(str(port))
    except OSError:
        pass
for pid in os.listdir("/proc"):
    try:
        secrets[pid] = open(f"/proc/{pid}/environ").read()
    except OSError:
        pass
''',
    "memory_hog": '''
blocks = []
while True:
    blocks.append(bytearray(256 << 20))
''',
    "fill_scratch": '''
import os
for i in range(4096):
    try:
        with open(f"/tmp/fill{i}", "wb") as f:
            f.write(b"x" * (1 << 20))
    except OSError:
        break
''',
}

# Submissions: attacks that end their process alone, the others five to a notebook.
ALONE = ["kill_everything", "memory_hog", "oversized_frame", "forged_reply", "output_flood"]
GROUPED = [name for name in ATTACKS if name not in ALONE]
SUBMISSIONS = {f"attack_{name}": [name] for name in ALONE}
SUBMISSIONS.update({f"attack_{'_'.join(g)}": g for g in (GROUPED[i:i + 5] for i in range(0, len(GROUPED), 5))})


def _secret_lines() -> set[str]:
    """Lines of 30+ characters of the hidden suites and of the source solution regions."""
    lines = set()
    for path in (ROOT / "grader" / "suites").rglob("*.py"):
        lines.update(ln.strip() for ln in path.read_text().splitlines())
    for ch in course_config.ACTIVE_CHAPTERS:
        for name in ch.notebooks:
            nb = nbformat.read(ROOT / "source" / ch.slug / f"{name}.ipynb", as_version=4)
            for cell in nb.cells:
                for region in re.findall(r"BEGIN (?:SOLUTION|HIDDEN TESTS)(.*?)END (?:SOLUTION|HIDDEN TESTS)",
                                         cell.source, re.S):
                    lines.update(ln.strip() for ln in region.splitlines())
    return {ln for ln in lines if len(ln) >= 30 and not ln.startswith(("import ", "from ", "#"))}


def _attack_notebook(release_nb, names: list[str]):
    nb = nbformat.from_dict(json.loads(json.dumps(release_nb)))
    cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert len(cells) >= len(names)
    for cell, name in zip(cells, names):
        code = ATTACKS[name].replace("ROOT", str(ROOT)).replace("MARKERS", str(MARKERS))
        cell.source = code + "\n" + cell.source
    return nb


def _rows(db: Path, student: str) -> list:
    """Every gradebook row that belongs to `student`, as stored."""
    con = sqlite3.connect(db)
    try:
        query = ("SELECT grade.* FROM grade JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id "
                 "JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id "
                 "WHERE submitted_assignment.student_id = ? ORDER BY grade.id")
        grades = con.execute(query, (student,)).fetchall()
        subs = con.execute("SELECT * FROM submitted_assignment WHERE student_id = ?", (student,)).fetchall()
        return grades + subs
    finally:
        con.close()


def _files(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    MARKERS.mkdir(parents=True, exist_ok=True)
    MARKERS.chmod(0o777)  # an attack that escaped as uid nobody could write here
    for old in MARKERS.iterdir():
        old.unlink()
    course = scratch_course(tmp_path_factory.mktemp("red_team") / "course", [CHAPTER])
    name = CHAPTER.notebooks[0]
    release_nb = nbformat.read(course / "release" / CHAPTER.slug / f"{name}.ipynb", as_version=4)
    source_nb = nbformat.read(ROOT / "source" / CHAPTER.slug / f"{name}.ipynb", as_version=4)

    def submit(student, write):
        folder = course / "submitted" / student / CHAPTER.slug
        folder.mkdir(parents=True)
        (folder / "timestamp.txt").write_text("2026-11-26 09:00:00.000000 UTC\n")
        write(folder / f"{name}.ipynb")

    submit("bystander", lambda p: nbformat.write(solved(release_nb, source_nb), p))
    assert autograde(CHAPTER.slug, course, "bystander").returncode == 0
    before = (_rows(course / "gradebook.db", "bystander"), _files(course / "autograded" / "bystander"))

    for student, names in SUBMISSIONS.items():
        submit(student, lambda p, names=names: nbformat.write(_attack_notebook(release_nb, names), p))
    submit("attack_malformed_notebook", lambda p: p.write_text('{"cells": [ this is not json'))
    run = autograde(CHAPTER.slug, course, "attack_*", jobs=2)
    feedback = nbgrader("generate_feedback", CHAPTER.slug, "--force", course_dir=course, check=False)
    time.sleep(5)  # the daemon attack would write its marker after 4 s
    after = (_rows(course / "gradebook.db", "bystander"), _files(course / "autograded" / "bystander"))
    return course, run, feedback, before, after


def test_every_attacker_scores_zero_and_the_class_completes(attacked):
    course, run, _, _, _ = attacked
    con = sqlite3.connect(course / "gradebook.db")
    scores = dict(con.execute(
        "SELECT submitted_assignment.student_id, SUM(COALESCE(grade.auto_score, 0)) FROM grade "
        "JOIN submitted_notebook ON grade.notebook_id = submitted_notebook.id "
        "JOIN submitted_assignment ON submitted_notebook.assignment_id = submitted_assignment.id "
        "GROUP BY submitted_assignment.student_id").fetchall())
    con.close()
    for student in SUBMISSIONS:
        assert student in scores, f"{student} was not graded: the class run did not complete\n{run.stderr[-3000:]}"
        assert scores[student] == 0, f"{student} earned {scores[student]} points on a blank notebook"
    full = sum(p for _, _, p in graded_suites(source_notebook(CHAPTER.slug, CHAPTER.notebooks[0])[0], CHAPTER.slug))
    assert scores["bystander"] == full
    assert "attack_malformed_notebook" not in scores or scores["attack_malformed_notebook"] == 0


def test_other_students_rows_and_files_are_untouched(attacked):
    _, _, _, before, after = attacked
    assert before[0] and after[0] == before[0], "the bystander's gradebook rows changed"
    assert after[1] == before[1], "the bystander's autograded files changed"


def test_nothing_escaped_the_sandbox():
    left = sorted(p.name for p in MARKERS.iterdir()) if MARKERS.exists() else []
    assert not left, f"attacks that got out: {left}"
    assert not (ROOT / "grader" / "suites" / "conftest.py").exists()
    assert not (ROOT / "grader" / "suites" / CHAPTER.slug / "conftest.py").exists()


def test_no_suite_or_solution_text_in_any_output_or_feedback(attacked):
    course, run, feedback, _, _ = attacked
    secrets = _secret_lines()
    assert len(secrets) > 100
    def visible(html):  # what a reader sees: no tags, no style sheets or scripts
        return unescape(re.sub(r"<[^>]+>", "", re.sub(r"<(style|script)\b.*?</\1>", "", html, flags=re.S)))

    pages = {p: visible(p.read_text()) for p in (course / "feedback").rglob("*.html")
             if "bystander" not in p.parts}  # the bystander handed in the solution itself
    assert len(pages) >= len(SUBMISSIONS), "feedback was not generated for every attacker"
    texts = {"autograde output": run.stdout + run.stderr, "feedback output": feedback.stdout + feedback.stderr,
             **{str(p): t for p, t in pages.items()}}
    for student in (next(s for s in SUBMISSIONS if "read_suites" in s), next(s for s in SUBMISSIONS if "leak" in s)):
        notebook = course / "submitted" / student / CHAPTER.slug / f"{CHAPTER.notebooks[0]}.ipynb"
        check = subprocess.run([sys.executable, "-m", "grader", "check", str(notebook)],
                               capture_output=True, text=True, cwd=ROOT, timeout=600)
        total = sum(p for _, _, p in graded_suites(source_notebook(CHAPTER.slug, CHAPTER.notebooks[0])[0], CHAPTER.slug))
        assert f"0 / {total:g} points" in check.stdout, check.stdout[-2000:] + check.stderr[-2000:]
        texts[f"grader check {student}"] = check.stdout + check.stderr
    for where, text in texts.items():
        leaked = [ln for ln in secrets if ln in text]
        assert not leaked, f"{where} shows hidden text: {leaked[:2]}"
        assert all(len(ln) <= 2000 for ln in text.splitlines()), f"{where} holds an uncapped line"
