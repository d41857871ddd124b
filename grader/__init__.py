"""The course grader: hidden suites, the worker sandbox, the judge, the nbgrader plugin.

It is installed only where grading happens, never in the student image. Instructors use
it through `python -m grader` (see grader/__main__.py).
"""


def grade(suite: str) -> None:
    """The hidden-test call in a source notebook's test cells.

    In a kernel it only says where the grading happens: the judge runs `suite` against
    the submission in its own worker processes and writes the verdict into this cell.
    """
    print(f"Hidden tests {suite!r} run in the course grader, outside this kernel.")
