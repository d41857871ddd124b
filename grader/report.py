"""The class table: one row per student and chapter, read from nbgrader's gradebook."""

from __future__ import annotations

import csv
from pathlib import Path

from nbgrader.api import Gradebook

import course_config

COLUMNS = ("student", "chapter", "score", "max_score", "percent")


def class_table(course_dir: Path) -> list[dict]:
    db = course_dir / "gradebook.db"
    if not db.exists():
        raise FileNotFoundError(f"no gradebook at {db}: run an autograde there first")
    rows = []
    with Gradebook(f"sqlite:///{db}", course_config.COURSE_ID) as gradebook:
        for assignment in sorted(gradebook.assignments, key=lambda a: a.name):
            for submission in sorted(assignment.submissions, key=lambda s: s.student.id):
                rows.append({
                    "student": submission.student.id,
                    "chapter": assignment.name,
                    "score": round(submission.score, 3),
                    "max_score": round(submission.max_score, 3),
                    "percent": round(100 * submission.score / submission.max_score, 1)
                    if submission.max_score else 0.0,
                })
    return rows


def print_table(rows: list[dict]) -> None:
    if not rows:
        print("(no submissions graded)")
        return
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS}
    print("  ".join(c.ljust(widths[c]) for c in COLUMNS))
    print("  ".join("-" * widths[c] for c in COLUMNS))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in COLUMNS))


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
