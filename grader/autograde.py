"""Grading a class: every submission judged in parallel, then recorded by nbgrader.

nbgrader grades one submission after another (its issue #174, open since 2015) and its
SQLite gradebook takes one writer at a time. So the work is split where it is safe to:
1. the judge runs for each submission, `jobs` at a time (each run is its own processes:
   a pytest judge and sandboxed workers), and keeps its verdicts in a private folder;
2. nbgrader's own `autograde` then walks the class serially, and its JudgeCells step
   finds each verdict already reached for exactly that code (grader/judge.py), so the
   gradebook is written by one process, as with `--jobs 1`, with the same scores.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat

import course_config
from grader.course import nbgrader
from grader.judge import JUDGED_ENV, run_suites
from grader.notebook import graded_suites, source_notebook, student_cells


def submissions(chapter: course_config.Chapter, course_dir: Path, student: str | None = None) -> list[Path]:
    """submitted/<student>/<chapter>/ folders, one per student."""
    folders = sorted((course_dir / "submitted").glob(f"{student or '*'}/{chapter.slug}"))
    return [f for f in folders if f.is_dir()]


def adopt_renamed(folder: Path, chapter: course_config.Chapter) -> list[str]:
    """A single-notebook chapter submitted under another file name (Jupyter's "Copy1",
    a student's own name) is graded as that chapter's notebook: copied to the expected
    name, the student's file kept. Returns a line for the log per notebook adopted."""
    notes = []
    expected = [folder / f"{name}.ipynb" for name in chapter.notebooks]
    others = sorted(p for p in folder.glob("*.ipynb") if p not in expected)
    if len(expected) == 1 and not expected[0].exists() and len(others) == 1:
        shutil.copyfile(others[0], expected[0])
        notes.append(f"{folder.parent.name}: {others[0].name} graded as {chapter.slug}/{expected[0].name} "
                     f"(the notebook was renamed)")
    return notes


def judge_folder(folder: Path, chapter: course_config.Chapter, course_dir: Path) -> None:
    """Run the judge on each notebook of one submission (verdicts kept for nbgrader)."""
    for name in chapter.notebooks:
        path = folder / f"{name}.ipynb"
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception:  # missing or malformed: nbgrader reports it for this student
            continue
        source, _ = source_notebook(chapter.slug, name, course_dir)
        suites = [s for _, s, _ in graded_suites(source, chapter.slug)]
        run_suites(student_cells(nb, source), suites, chapter=chapter.slug, filename=path.name)


def autograde(chapter_key: str, course_dir: Path, student: str | None = None, jobs: int = 1):
    """Grade `chapter` for every submitted student (or one), `jobs` submissions at a time.
    Returns nbgrader's completed process; prints progress and the wall time."""
    chapter = course_config.chapter(chapter_key)
    folders = submissions(chapter, course_dir, student)
    for folder in folders:
        for note in adopt_renamed(folder, chapter):
            print(note)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grader-judged-") as judged:
        os.environ[JUDGED_ENV] = judged
        try:
            with ThreadPoolExecutor(max(1, jobs)) as pool:
                done = 0
                for _ in pool.map(lambda f: judge_folder(f, chapter, course_dir), folders):
                    done += 1
                    print(f"\rjudged {done}/{len(folders)} submissions of {chapter.slug}",
                          end="", file=sys.stderr, flush=True)
            print(file=sys.stderr)
            extra = ["--student", student] if student else []
            run = nbgrader("autograde", chapter.slug, "--force", *extra, course_dir=course_dir,
                           check=False, env={JUDGED_ENV: judged})
        finally:
            os.environ.pop(JUDGED_ENV, None)
    print(f"graded {len(folders)} submissions of {chapter.slug} in {time.perf_counter() - start:.1f} s "
          f"with --jobs {jobs}", file=sys.stderr)
    return run
