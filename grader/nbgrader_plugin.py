"""The nbgrader preprocessor that scores a submission: `JudgeCells`.

nbgrader's autograde pipeline runs no kernel here (nbgrader_config.py): a kernel would
run student code unconfined on the grading host. `JudgeCells` hands the submission's
code, arranged by the instructors' source notebook (grader/notebook.py), to the judge
(grader/judge.py), which runs the hidden suites against it in sandboxed workers, and
writes each test cell's verdict and score, with the points from the source notebook.
"""

from __future__ import annotations

from pathlib import Path

import course_config
from nbgrader.preprocessors import NbGraderPreprocessor

from grader.judge import run_suites
from grader.notebook import graded_suites, source_notebook, student_cells, write_result


class JudgeCells(NbGraderPreprocessor):
    def preprocess(self, nb, resources):
        chapter = resources["nbgrader"]["assignment"]
        course_dir = Path(self.config.CourseDirectory.get("root", course_config.ROOT))
        source, _ = source_notebook(chapter, resources["nbgrader"]["notebook"], course_dir)
        suites = graded_suites(source, chapter)
        if not suites:
            return nb, resources
        name = f"{resources['nbgrader']['notebook']}.ipynb"
        results = run_suites(student_cells(nb, source), [s for _, s, _ in suites],
                             chapter=chapter, filename=name)
        cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
        for grade_id, suite, points in suites:
            if grade_id in cells:  # nbgrader put back any test cell the student deleted
                score = write_result(cells[grade_id], results[suite], points)
                self.log.info("%s: %s", suite, score)
        return nb, resources
