"""What the grader reads from a notebook and what it writes back into it.

The student's code is the instructors' read-only setup cells and the submission's
solution cells, in the source notebook's order (`student_cells(nb, source)`); demo cells (plots, measurements) and test cells are
left out, so a slow plot or a failing visible check never stands in the way of grading.
"""

from __future__ import annotations

import copy
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


def student_cells(nb, source=None) -> list[dict]:
    """The student's code, cell by cell ({"name", "source"}), in notebook order; IPython
    magics and shell lines are dropped (blanked, so line numbers stay right).

    With `source` (the instructors' notebook), the submission's own cell roles are not
    trusted: the cells and their order come from `source`, read-only setup cells with the
    source's text (a deleted or edited one is restored), solution cells with the
    submission's text of the same grade_id (the last one, as nbgrader keeps; a deleted
    one is simply absent)."""
    if source is not None:
        answers = {_nbgrader(c).get("grade_id"): c for c in nb.cells
                   if c.get("cell_type") == "code" and _nbgrader(c).get("grade_id")}
        nb = copy.deepcopy(source)
        kept = []
        for cell in nb.cells:
            if _nbgrader(cell).get("solution"):
                if _nbgrader(cell).get("grade_id") not in answers:
                    continue
                cell.source = answers[_nbgrader(cell)["grade_id"]].source
            kept.append(cell)
        nb.cells = kept
    cells = []
    for index, cell in enumerate(nb.cells):
        if is_student_code(cell):
            lines = ["" if MAGIC.match(ln) else ln for ln in cell.source.splitlines()]
            name = _nbgrader(cell).get("grade_id") or str(index)
            cells.append({"name": repr(name), "source": "\n".join(lines) + "\n"})
    return cells


def source_notebook(chapter: str, name: str, course_dir: Path = course_config.ROOT):
    """The instructors' notebook `name` of `chapter`: the trusted structure of a submission.
    A chapter with a single notebook accepts any name (a renamed copy of it)."""
    ch = course_config.chapter(chapter)
    if name not in ch.notebooks:
        if len(ch.notebooks) != 1:
            raise KeyError(f"{chapter} has no notebook named {name!r}; its notebooks: {ch.notebooks}")
        name = ch.notebooks[0]
    return nbformat.read(course_dir / "source" / ch.slug / f"{name}.ipynb", as_version=4), name


def chapter_of(nb, path: Path | None = None) -> str:
    """The chapter slug, from the notebook's metadata or else its folder name."""
    slug = nb.metadata.get("llmcourse", {}).get("chapter")
    if not slug and path is not None:
        slug = Path(path).resolve().parent.name
    return course_config.chapter(slug).slug


def graded_suites(nb, chapter: str) -> list[tuple[str, str, float]]:
    """(grade_id, suite name, points) of each test cell of `nb` that has a hidden suite.
    Call it on the instructors' source notebook: a submission's points are not trusted."""
    found = []
    for cell in nb.cells:
        if is_graded(cell):
            grade_id = _nbgrader(cell)["grade_id"]
            suite = f"{chapter}/{grade_id}"
            if suite_path(suite).is_file():
                found.append((grade_id, suite, float(_nbgrader(cell).get("points", 0))))
    return found


def render(result: SuiteResult, points: float) -> tuple[str, float]:
    """Per-test feedback text and the cell's score out of `points`."""
    score = round(points * result.fraction, 3)
    passed = sum(t.status == "passed" for t in result.tests)
    counted = sum(t.status != "blocked" for t in result.tests)
    lines = [f"Hidden tests ({result.suite}): {passed} of {counted} passed, "
             f"{score:g} / {points:g} points"]
    shown = set()
    for t in result.tests:
        share = points * t.points / result.available if result.available else 0.0
        got = share if t.status == "passed" else 0.0
        tail = "blocked" if t.status == "blocked" else f"{got:.2f} / {share:.2f}"
        lines.append(f"  {STATUS_MARK.get(t.status, '?')} {t.status:<8} {tail:>11}  {t.name}")
        if t.leaderboard:
            lines.append(f"        leaderboard: {t.leaderboard['metric']} = {t.leaderboard['value']:.4g} "
                         f"{t.leaderboard['unit']}".rstrip())
        message = t.message.strip()
        if message and message in shown:  # one cause, one explanation: the first test has it
            message = "(the same as above)"
        shown.add(message)
        for line in message.splitlines()[:12]:
            lines.append(f"        {line}")
    return "\n".join(lines) + "\n", score


def write_result(cell, result: SuiteResult, points: float) -> float:
    """Replace the cell's outputs with the judge's verdict: feedback text, then the score
    as the execute_result nbgrader reads for partial credit."""
    text, score = render(result, points)
    boards = [t.leaderboard for t in result.tests if t.leaderboard]
    if boards:  # kept in the autograded notebook for `python -m grader leaderboard`
        cell.metadata["leaderboard"] = boards[0]
    else:
        cell.metadata.pop("leaderboard", None)
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=text),
        nbformat.v4.new_output("execute_result", data={"text/plain": repr(float(score))},
                               execution_count=cell.get("execution_count")),
    ]
    return score
