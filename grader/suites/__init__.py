"""Hidden suites: one folder per chapter, one `test_<grade_id>.py` per graded cell.

Each test takes the `student` fixture (grader/judge.py), carries `@pytest.mark.points`,
and fails with a message written for the student: the judge runs pytest with plain
asserts, so the message is all that reaches the feedback, never the test's source.
"""
