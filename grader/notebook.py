"""What the grader reads from a notebook and what it writes back into it.

The student's code is the notebook's read-only setup cells (as nbgrader restored them)
and its solution cells, in order; demo cells (plots, measurements) and test cells are
left out, so a slow plot or a failing visible check never stands in the way of grading.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

import course_config
from grader.judge import SuiteResult, suite_path

MAGIC = re.compile(r"^\s*[%!]")
STATUS_MARK = {"passed": "✓", "failed": "✗", "timeout": "⧗", "crashed": "☠", "blocked": "–", "error": "!"}


def _nbgrader(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_student_code(cell) -> bool:
    meta = _nbgrader(cell)
    if cell.get("cell_type") != "code":
        return False
    return bool(meta.get("solution")) or (bool(meta.get("locked")) and not meta.get("grade"))


def is_graded(cell) -> bool:
    meta = _nbgrader(cell)
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")


def student_cells(nb) -> list[dict]:
    """The student's code, cell by cell ({"name", "source"}), in notebook order; IPython
    magics and shell lines are dropped (blanked, so line numbers stay right)."""
    cells = []
    for index, cell in enumerate(nb.cells):
        if is_student_code(cell):
            lines = ["" if MAGIC.match(ln) else ln for ln in cell.source.splitlines()]
            name = _nbgrader(cell).get("grade_id") or str(index)
            cells.append({"name": repr(name), "source": "\n".join(lines) + "\n"})
    return cells


def chapter_of(nb, path: Path | None = None) -> str:
    """The chapter slug, from the notebook's metadata or else its folder name."""
    slug = nb.metadata.get("llmcourse", {}).get("chapter")
    if not slug and path is not None:
        slug = Path(path).resolve().parent.name
    return course_config.chapter(slug).slug


def graded_suites(nb, chapter: str) -> list[tuple[int, str]]:
    """(cell index, suite name) for each test cell that has a hidden suite."""
    found = []
    for index, cell in enumerate(nb.cells):
        if is_graded(cell):
            suite = f"{chapter}/{_nbgrader(cell)['grade_id']}"
            if suite_path(suite).is_file():
                found.append((index, suite))
    return found


def render(result: SuiteResult, points: float) -> tuple[str, float]:
    """Per-test feedback text and the cell's score out of `points`."""
    score = round(points * result.fraction, 3)
    passed = sum(t.status == "passed" for t in result.tests)
    counted = sum(t.status != "blocked" for t in result.tests)
    lines = [f"Hidden tests ({result.suite}): {passed} of {counted} passed, "
             f"{score:g} / {points:g} points"]
    for t in result.tests:
        share = points * t.points / result.available if result.available else 0.0
        got = share if t.status == "passed" else 0.0
        tail = "blocked" if t.status == "blocked" else f"{got:.2f} / {share:.2f}"
        lines.append(f"  {STATUS_MARK.get(t.status, '?')} {t.status:<8} {tail:>11}  {t.name}")
        for line in t.message.strip().splitlines()[:12]:
            lines.append(f"        {line}")
    return "\n".join(lines) + "\n", score


def write_result(cell, result: SuiteResult) -> float:
    """Replace the cell's outputs with the judge's verdict: feedback text, then the score
    as the execute_result nbgrader reads for partial credit."""
    text, score = render(result, float(_nbgrader(cell).get("points", 0)))
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=text),
        nbformat.v4.new_output("execute_result", data={"text/plain": repr(float(score))},
                               execution_count=cell.get("execution_count")),
    ]
    return score
