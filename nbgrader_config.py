"""nbgrader's settings, derived from course_config.py (edit facts there, not here)."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
# The course directory nbgrader works in: this repository, or a scratch copy (the demo
# class, the end-to-end tests) named by the grader CLI.
COURSE_DIR = Path(os.environ.get("LLMOPT_COURSE_DIR", ROOT)).resolve()

import course_config  # noqa: E402

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

c.CourseDirectory.course_id = course_config.COURSE_ID
c.CourseDirectory.root = str(COURSE_DIR)
c.CourseDirectory.solution_directory = "solutions"
c.CourseDirectory.db_url = f"sqlite:///{COURSE_DIR / 'gradebook.db'}"
# Text twins (*.py) are the notebooks' diff-friendly sources: never copy them anywhere.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.py"]

# The exchange and the students' side of it (fetch_assignment, submit, fetch_feedback)
# live where course_config says, inside the course directory by default: nothing goes to
# /usr/local/share/nbgrader or to the home directory (nbgrader's submit cache).
c.Exchange.root = str(COURSE_DIR / course_config.EXCHANGE_DIR)
c.Exchange.assignment_dir = str(COURSE_DIR / course_config.WORKSPACE_DIR)
c.Exchange.cache = str(COURSE_DIR / course_config.WORKSPACE_DIR / ".nbgrader_cache")

# The hidden region of a test cell holds only the call that names its suite.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# A finite per-cell limit in the student kernel (nbgrader's default of 30 s is too short
# for model-loading cells; None could hang forever). The largest chapter limit applies.
c.Execute.timeout = max(ch.execute_timeout_s for ch in course_config.CHAPTERS)
c.Execute.interrupt_on_timeout = True

# nbgrader zeroes a test cell with any stderr; torch and friends warn on stderr.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = course_config.GRADING.ignore_stderr_pattern

# A student who deletes a test cell gets it back (and its tests run), not a blank grade.
c.OverwriteCells.add_missing_cells = True

# Solutions: the source with hidden tests removed, executed with outputs.
c.GenerateSolution.preprocessors = [
    "nbgrader.preprocessors.IncludeHeaderFooter",
    "nbgrader.preprocessors.LockCells",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.ClearHiddenTests",
    "nbgrader.preprocessors.ClearMarkScheme",
    "nbgrader.preprocessors.Execute",
]

# Autograde runs no kernel: student code runs only in the judge's sandboxed workers, and
# the judge writes every test cell's verdict and score.
c.Autograde.autograde_preprocessors = [
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "grader.nbgrader_plugin.JudgeCells",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
