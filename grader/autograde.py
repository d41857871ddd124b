"""Grading a class: every submission judged in parallel, then recorded by nbgrader.

nbgrader grades one submission after another (its issue #174, open since 2015) and its
SQLite gradebook takes one writer at a time. So the work is split where it is safe to:
1. the judge runs for each submission, `jobs` at a time (each run is its own processes:
   a pytest judge and sandboxed workers), and keeps its verdicts in a folder of verdicts,
   each file named by a hash of what it judged (grader/judge.py);
2. nbgrader's own `autograde` then walks the class serially, and its JudgeCells step
   finds each verdict already reached for exactly that code, so the gradebook is written
   by one process, as with `--jobs 1`, with the same scores.

The same split spreads grading over machines (environment/k8s/): each of N machines runs
step 1 on its shard of the class (`shard=(i, n)`: every n-th student in sorted order,
from the i-th) into one shared folder of verdicts, `verdicts`, and writes no gradebook;
then one process runs both steps over the whole class with that folder, judging only what
no shard left there (a machine that died, a file cut short), and writes the gradebook;
a shard run again (its pod retried) judges only what it had not.
Without `verdicts` the folder is a private temporary one, gone when grading ends. A kept
folder is trusted as the grader's own: its files become scores, so it must be writable by
the grader alone, never by students; no sandbox sees it (it may not lie in what the
sandbox mounts, grader/sandbox/bubblewrap.py).
"""

from __future__ import annotations

import contextlib
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
from grader.sandbox import bubblewrap


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


def shard_of(folders: list[Path], shard: tuple[int, int] | None) -> list[Path]:
    """Shard i of n of the class's submission folders (sorted by student id): every n-th
    from the i-th. The n shards together hold each folder exactly once, on any machine."""
    if shard is None:
        return folders
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: the index must be in 0..{count - 1}")
    return sorted(folders)[index::count]


@contextlib.contextmanager
def verdict_folder(verdicts: Path | None):
    """The folder of verdicts for this run, named to the judge (and to nbgrader's judge)
    through JUDGED_ENV: `verdicts`, kept, or a temporary one."""
    if verdicts is None:
        folder = tempfile.TemporaryDirectory(prefix="grader-judged-")
        path = Path(folder.name)
    else:
        folder, path = contextlib.nullcontext(), verdicts.resolve()
        if bubblewrap.visible_in_sandbox(path):
            raise ValueError(f"{path} lies in what the sandbox shows student code: keep the "
                             f"verdicts elsewhere, writable by the grader only")
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with folder:
        os.environ[JUDGED_ENV] = str(path)
        try:
            yield path
        finally:
            os.environ.pop(JUDGED_ENV, None)


def autograde(chapter_key: str, course_dir: Path, student: str | None = None, jobs: int = 1,
              verdicts: Path | None = None, shard: tuple[int, int] | None = None):
    """Grade `chapter` for every submitted student (or one), `jobs` submissions at a time,
    with the verdicts kept in `verdicts` (a temporary folder if None). With `shard` (i, n):
    judge only that shard of the class into `verdicts` and return None, the gradebook
    untouched; else returns nbgrader's completed process. Prints progress and the time."""
    chapter = course_config.chapter(chapter_key)
    if shard is not None and verdicts is None:
        raise ValueError("a shard's verdicts must be kept for the merge: name a verdicts folder")
    folders = shard_of(submissions(chapter, course_dir, student), shard)
    for folder in folders:
        for note in adopt_renamed(folder, chapter):
            print(note)
    part = "" if shard is None else f" (shard {shard[0]}/{shard[1]})"
    start = time.perf_counter()
    with verdict_folder(verdicts) as judged:
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            done = 0
            for _ in pool.map(lambda f: judge_folder(f, chapter, course_dir), folders):
                done += 1
                print(f"\rjudged {done}/{len(folders)} submissions of {chapter.slug}{part}",
                      end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        run = None
        if shard is None:
            extra = ["--student", student] if student else []
            run = nbgrader("autograde", chapter.slug, "--force", *extra, course_dir=course_dir,
                           check=False, env={JUDGED_ENV: str(judged)})
    done_what = "judged" if shard is not None else "graded"
    print(f"{done_what} {len(folders)} submissions of {chapter.slug}{part} in "
          f"{time.perf_counter() - start:.1f} s with --jobs {jobs}", file=sys.stderr)
    return run
