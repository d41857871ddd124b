"""The class ranking of a chapter: `python -m grader leaderboard CHAPTER [--course-dir DIR]`.

A suite that ranks the class records one number per submission in the judge
(`record_property("leaderboard", {...})`); the judge writes it into the graded cell's
metadata of the autograded notebook (`grader.notebook.write_result`), which nbgrader
keeps in `autograded/<student>/<chapter>/<notebook>.ipynb`. This module reads those
back, through the same check (`grader.judge.leaderboard_entry`): no second store, and a
regrade replaces the number with the score.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

import course_config
from grader.judge import leaderboard_entry
from grader.notebook import graded_suites, source_notebook


def ranking(chapter_key: str, course_dir: Path) -> list[dict]:
    """One row per (student, graded cell with a leaderboard number), best first."""
    chapter = course_config.chapter(chapter_key)
    # Only the graded cells the judge writes (write_result sets or clears their number):
    # a submission's other cells may carry any metadata the student typed.
    graded = {name: {grade_id for grade_id, _, _ in graded_suites(source_notebook(chapter.slug, name)[0],
                                                                  chapter.slug)}
              for name in chapter.notebooks}
    rows = []
    for folder in sorted((course_dir / "autograded").glob(f"*/{chapter.slug}")):
        for name in chapter.notebooks:
            path = folder / f"{name}.ipynb"
            try:
                nb = nbformat.read(path, as_version=4)
            except Exception:  # missing or unreadable: that student has no entry
                continue
            seen = set()
            for cell in nb.cells:
                grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
                if grade_id not in graded[name] or grade_id in seen:
                    continue
                seen.add(grade_id)
                entry = leaderboard_entry(cell.metadata.get("leaderboard"))
                if entry is not None:
                    rows.append({"student": folder.parent.name, "cell": grade_id, **entry})
    rows.sort(key=lambda r: (r["cell"], -r["value"], r["student"]))
    return rows


def print_ranking(rows: list[dict]) -> None:
    if not rows:
        print("(no leaderboard numbers: autograde the chapter first; only suites that rank record one)")
        return
    cell = None
    for row in rows:
        if row["cell"] != cell:
            cell, rank = row["cell"], 0
            print(f"{cell}: {row['metric']} ({row['unit']}), higher is better")
        rank += 1
        print(f"  {rank:>3}. {row['student']:<24} {row['value']:10.4g}")
