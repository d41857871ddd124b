"""Building the course and driving nbgrader: notebooks from their text twins, release
and solution notebooks, a course directory for the demo class or the tests.

Each chapter notebook is authored as a jupytext "percent" script beside it
(source/<chapter>/<notebook>.py): readable diffs, and the .ipynb is generated from it,
with deterministic cell ids so that a rebuild of unchanged text changes no byte.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jupytext
import nbformat
from traitlets.config.loader import PyFileConfigLoader
from traitlets.utils.importstring import import_item

import course_config
from course_config import ROOT
from grader.references import cited_keys, references_cell_source


def twin_path(chapter: course_config.Chapter, notebook: str) -> Path:
    return ROOT / "source" / chapter.slug / f"{notebook}.py"


def notebook_from_twin(chapter: course_config.Chapter, notebook: str) -> nbformat.NotebookNode:
    nb = jupytext.read(twin_path(chapter, notebook), fmt="py:percent")
    nb.metadata.pop("jupytext", None)
    nb.metadata["llmcourse"] = {"chapter": chapter.slug}
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    # The chapter ends with the REFERENCES.md entries it cites as `[@key]` (an unknown key stops
    # the build, naming the key and the file).
    twin = twin_path(chapter, notebook)
    keys = cited_keys("\n".join(cell.source for cell in nb.cells))
    nb.cells.append(nbformat.v4.new_markdown_cell(
        references_cell_source(keys, str(twin.relative_to(ROOT)))))
    for index, cell in enumerate(nb.cells):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        cell["id"] = grade_id or f"{chapter.short}-{index:03d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.validate(nb)
    return nb


def build_notebooks(chapters=course_config.ACTIVE_CHAPTERS) -> list[Path]:
    """Write source/<chapter>/<notebook>.ipynb from each text twin."""
    written = []
    for ch in chapters:
        for name in ch.notebooks:
            path = ROOT / "source" / ch.slug / f"{name}.ipynb"
            nbformat.write(notebook_from_twin(ch, name), path)
            written.append(path)
    return written


def nbgrader(*args: str, course_dir: Path = ROOT, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run an nbgrader command on `course_dir` with the repository's nbgrader_config.py."""
    bin_dir = str(Path(sys.executable).parent)  # nbgrader calls `alembic` as a program
    env = dict(os.environ, **(env or {}), LLMOPT_COURSE_DIR=str(course_dir), PYTHONPATH=str(ROOT),
               PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    if check and run.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}")
    return run


def _normalize(path: Path) -> None:
    """Strip what makes two builds of the same text differ (kernel versions, timestamps)."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata["language_info"] = {"name": "python"}
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)


def release(course_dir: Path = ROOT, chapters=course_config.ACTIVE_CHAPTERS) -> None:
    """nbgrader generate_assignment for each chapter: release/<chapter>/ for students."""
    for ch in chapters:
        nbgrader("generate_assignment", ch.slug, "--force", course_dir=course_dir)
        for path in sorted((course_dir / "release" / ch.slug).glob("*.ipynb")):
            _normalize(path)


def solutions(only_stale: bool = False, chapters=course_config.ACTIVE_CHAPTERS) -> list[str]:
    """Executed reference notebooks, hidden tests removed: solutions/<chapter>/. Every
    chapter is rebuilt (`make solutions`), or with `only_stale` only those whose committed
    solutions are not what their source notebooks give (`make course`: on a fresh clone it
    changes no file). Returns the chapters rebuilt."""
    rebuilt = []
    for ch in chapters:
        if only_stale and not stale_solutions(ch):
            continue
        folder = ROOT / "solutions" / ch.slug
        with tempfile.TemporaryDirectory(prefix="solutions-") as tmp:
            kept = Path(tmp) / ch.slug
            if folder.is_dir():
                shutil.copytree(folder, kept)
            try:  # generate_solution empties the folder first: a failed run must not lose it
                nbgrader("db", "assignment", "add", ch.slug)  # a checkout's gradebook may lack it
                nbgrader("generate_solution", ch.slug, "--force")
            except RuntimeError as exc:
                if kept.is_dir():
                    shutil.rmtree(folder, ignore_errors=True)
                    shutil.copytree(kept, folder)
                raise RuntimeError(f"{exc}\nsolutions/{ch.slug} is left as it was") from None
        for path in sorted(folder.glob("*.ipynb")):
            _normalize(path)
        rebuilt.append(ch.slug)
    return rebuilt


def _without_execution(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """`nb` as it was before it ran: no outputs, counts, timings or widget state."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    nb.metadata["language_info"] = {"name": "python"}
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def unexecuted_solution(chapter: course_config.Chapter, notebook: str) -> nbformat.NotebookNode:
    """What `nbgrader generate_solution` makes of the source notebook, before it executes
    it: nbgrader_config.py's GenerateSolution preprocessors, Execute left out."""
    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    nb = nbformat.read(ROOT / "source" / chapter.slug / f"{notebook}.ipynb", as_version=4)
    resources: dict = {}
    for name in config.GenerateSolution.preprocessors:
        if name.rsplit(".", 1)[-1] != "Execute":
            nb, resources = import_item(name)(config=config).preprocess(nb, resources)
    return _without_execution(nb)


def stale_solutions(chapter: course_config.Chapter) -> list[str]:
    """The notebooks of `chapter` whose solutions/ copy is missing, or whose cells differ
    from what the source gives. Outputs are not compared (every run changes timings): after
    a change to llmopt/ or the models, `make solutions` refreshes them."""
    stale = []
    for name in chapter.notebooks:
        path = ROOT / "solutions" / chapter.slug / f"{name}.ipynb"
        if not path.is_file() or (_without_execution(nbformat.read(path, as_version=4))
                                  != unexecuted_solution(chapter, name)):
            stale.append(name)
    return stale


def scratch_course(course_dir: Path, chapters=course_config.ACTIVE_CHAPTERS) -> Path:
    """A fresh course directory holding a copy of source/ for `chapters`, released, with
    its own gradebook: ready for autograde (the demo class, the tests)."""
    if course_dir.exists():
        shutil.rmtree(course_dir)
    course_dir.mkdir(parents=True)
    for ch in chapters:
        shutil.copytree(ROOT / "source" / ch.slug, course_dir / "source" / ch.slug,
                        ignore=shutil.ignore_patterns("*.py", "__pycache__", ".ipynb_checkpoints"))
    release(course_dir, chapters)
    return course_dir
