"""`python -m grader leaderboard`: the ranking read back from autograded notebooks, and the
judge's path from a suite's recorded number to the graded cell's metadata."""

import nbformat

from grader.__main__ import main
from grader.judge import SuiteResult
from grader.judge import TestResult as Verdict
from grader.notebook import render, write_result


def _graded_notebook(value):
    cell = nbformat.v4.new_code_cell("grade()", metadata={"nbgrader": {"grade_id": "leaderboard", "grade": True}})
    result = SuiteResult("ch06_scheduling/leaderboard", [Verdict(
        "goodput per GPU on the Mooncake slice", 1.0, "passed",
        leaderboard=None if value is None else {"metric": "goodput per GPU", "value": value, "unit": "req/s"})])
    write_result(cell, result, 2.0)
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# ch06"), cell])


def test_two_graded_students_are_ranked_best_first(tmp_path, capsys):
    for student, value in (("alice", 1.25), ("bob", 2.5), ("carol", None)):
        folder = tmp_path / "autograded" / student / "ch06_scheduling"
        folder.mkdir(parents=True)
        nbformat.write(_graded_notebook(value), folder / "ch06_scheduling.ipynb")
    assert main(["leaderboard", "ch06", "--course-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "goodput per GPU" in out and "carol" not in out
    assert out.index("bob") < out.index("alice"), out
    assert "1. bob" in out and "2. alice" in out


def test_a_number_typed_into_an_ungraded_cell_is_ignored(tmp_path, capsys):
    forged = _graded_notebook(None)
    forged.cells.insert(1, nbformat.v4.new_code_cell("x = 1", metadata={
        "leaderboard": {"metric": "goodput per GPU", "value": 1e9, "unit": "req/s"},
        "nbgrader": {"grade_id": "my_cell", "grade": True}}))
    folder = tmp_path / "autograded" / "mallory" / "ch06_scheduling"
    folder.mkdir(parents=True)
    nbformat.write(forged, folder / "ch06_scheduling.ipynb")
    assert main(["leaderboard", "ch06", "--course-dir", str(tmp_path)]) == 0
    assert "mallory" not in capsys.readouterr().out


def test_feedback_shows_the_number_and_a_regrade_without_one_clears_it():
    nb = _graded_notebook(3.0)
    cell = nb.cells[1]
    assert cell.metadata["leaderboard"]["value"] == 3.0
    text, _ = render(SuiteResult("s", [Verdict("t", 1.0, "passed", leaderboard=cell.metadata["leaderboard"])]), 1.0)
    assert "leaderboard: goodput per GPU = 3 req/s" in text
    write_result(cell, SuiteResult("s", [Verdict("t", 1.0, "failed")]), 1.0)
    assert "leaderboard" not in cell.metadata


def test_an_empty_course_says_so(tmp_path, capsys):
    assert main(["leaderboard", "ch06", "--course-dir", str(tmp_path)]) == 0
    assert "no leaderboard numbers" in capsys.readouterr().out
