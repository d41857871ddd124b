"""The demo class: submissions that exercise every path of the grader.

Chapter 1:
  reference         the reference solution                 -> full marks
  untouched         the release notebook as handed out     -> zero, no crash
  partly_wrong      one function replaced by a control     -> partial marks
  never_returns     a graded function loops forever        -> zero on its tests only
  exits_at_import   os._exit() when its code is loaded     -> zero, nothing else harmed
  deleted_cells     the reference with its test cells and its read-only setup cell
                    deleted -> full marks (the cells are put back and graded)
  one_syntax_error  the reference with a syntax error in one exercise
                    -> full marks on every other exercise
  roi_only          only the ROI exercise written          -> exactly that cell's points
  renamed_chapter   roi_only saved under another file name -> graded as chapter 1's
                    notebook, and the log says so

`make course` grades it in build/demo_course and prints the table; the end-to-end test
grades it in a temporary directory and asserts the scores.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

import course_config
from course_config import ROOT
from grader.course import nbgrader, scratch_course

SOLUTION_MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")
CONTROLS_DIR = ROOT / "grader" / "suites"

NEVER_RETURNS = '''
def {name}(*args, **kwargs):
    while True:  # a graded function that never returns
        pass
'''
EXITS_AT_IMPORT = "import os\nos._exit(3)  # leaves as soon as the code is loaded\n"

# The chapters the demo class submits, the function each demo breaks, the control that
# plays the partly wrong student and the one exercise the partial students write. One
# chapter proves the pipeline (its workers start in a second, without torch); every
# chapter's suites are proven directly against its reference and controls (tests/grader).
DEMO_TARGETS = {
    "ch01_why_optimize": {"never_returns": "cost_per_million_tokens",
                          "partly_wrong": "cost_ignores_utilization",
                          "syntax_error": "q_roi_claim_solution",
                          "only": "roi_solution"},
}
DEMO_CHAPTERS = tuple(course_config.chapter(slug) for slug in DEMO_TARGETS)


def solution_sources(source_nb) -> dict[str, str]:
    """grade_id -> the reference code of each solution cell, solution markers removed."""
    out = {}
    for cell in source_nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            lines = [ln for ln in cell.source.splitlines() if not SOLUTION_MARKER.match(ln)]
            out[meta["grade_id"]] = "\n".join(lines)
    return out


def solved(release_nb, source_nb, only: str | None = None):
    """The release notebook with every solution cell (or just `only`) filled in as the
    reference does."""
    nb = copy.deepcopy(release_nb)
    sources = solution_sources(source_nb)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in sources and only in (None, grade_id):
            cell.source = sources[grade_id]
    return nb


def with_code(nb, code: str, *, first: bool = False):
    """Append `code` to the last solution cell (it overrides earlier definitions), or
    prepend it to the first one."""
    nb = copy.deepcopy(nb)
    cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    cell = cells[0] if first else cells[-1]
    cell.source = code + "\n" + cell.source if first else cell.source + "\n\n" + code
    return nb


def control_path(chapter: str, control: str) -> Path:
    return CONTROLS_DIR / chapter / "controls" / f"{control}.py"


def controls(chapter: str) -> list[str]:
    return sorted(p.stem for p in (CONTROLS_DIR / chapter / "controls").glob("*.py"))


def control_targets(chapter: str, control: str) -> list[str] | None:
    """The suites a control is meant to fail, from its `# targets: a, b` line (None: all);
    `suite::test_name` names the one test of a suite that catches it. Proving a control
    runs just those, which keeps CI short."""
    for line in control_path(chapter, control).read_text().splitlines():
        if line.startswith("# targets:"):
            return [f"{chapter}/{name.strip()}" for name in line.split(":", 1)[1].split(",")]
    return None


def demo_submissions(chapter: course_config.Chapter, course_dir: Path) -> dict[str, dict]:
    """student id -> {notebook file name: notebook} for one chapter."""
    targets = DEMO_TARGETS[chapter.slug]
    students: dict[str, dict] = {}
    for name in chapter.notebooks:
        release_nb = nbformat.read(course_dir / "release" / chapter.slug / f"{name}.ipynb", as_version=4)
        source_nb = nbformat.read(ROOT / "source" / chapter.slug / f"{name}.ipynb", as_version=4)
        reference = solved(release_nb, source_nb)
        file = f"{name}.ipynb"
        only = solved(release_nb, source_nb, only=targets["only"])
        broken = copy.deepcopy(reference)
        cell = next(c for c in broken.cells if c.metadata.get("nbgrader", {}).get("grade_id") == targets["syntax_error"])
        cell.source = cell.source.replace("def ", "def def ", 1)  # one typo, one cell
        deleted = copy.deepcopy(reference)
        deleted.cells = [c for c in deleted.cells if not c.metadata.get("nbgrader", {}).get("grade")
                         and not (c.metadata.get("nbgrader", {}).get("locked") and c.cell_type == "code")]
        for student, nb in {
            "reference": reference,
            "untouched": release_nb,
            "partly_wrong": with_code(reference, control_path(chapter.slug, targets["partly_wrong"]).read_text()),
            "never_returns": with_code(reference, NEVER_RETURNS.format(name=targets["never_returns"])),
            "exits_at_import": with_code(reference, EXITS_AT_IMPORT, first=True),
            "deleted_cells": deleted,
            "one_syntax_error": broken,
            "roi_only": only,
        }.items():
            students.setdefault(student, {})[file] = nb
        if len(chapter.notebooks) == 1:
            students.setdefault("renamed_chapter", {})[f"{name}-Copy1.ipynb"] = only
    return students


def grade_demo_class(course_dir: Path, jobs: int = 2) -> list[dict]:
    """Build a scratch course, submit the demo class, autograde it, return the table."""
    from grader.autograde import autograde
    from grader.report import class_table

    scratch_course(course_dir, DEMO_CHAPTERS)
    for ch in DEMO_CHAPTERS:
        for student, notebooks in demo_submissions(ch, course_dir).items():
            folder = course_dir / "submitted" / student / ch.slug
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "timestamp.txt").write_text("2026-11-25 09:00:00.000000 UTC\n")
            for file, nb in notebooks.items():
                nbformat.write(nb, folder / file)
        run = autograde(ch.slug, course_dir, jobs=jobs)
        if run.returncode != 0:
            raise RuntimeError(f"autograde of {ch.slug} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        nbgrader("generate_feedback", ch.slug, "--force", course_dir=course_dir)
    return class_table(course_dir)
