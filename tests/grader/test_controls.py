"""Every hidden suite is proven twice: the reference solution gets full marks, and each
negative control (a deliberately wrong implementation) gets less."""

import nbformat
import pytest

import course_config
from course_config import ROOT
from grader.demo import control_path, control_targets, controls, with_code
from grader.judge import run_suites
from grader.notebook import graded_suites, student_cells

CASES = [(ch, nb) for ch in course_config.ACTIVE_CHAPTERS for nb in ch.notebooks]


def reference(chapter, notebook):
    return nbformat.read(ROOT / "source" / chapter.slug / f"{notebook}.ipynb", as_version=4)


def grade(nb, chapter, only=None, until_first_failure=False):
    suites = [s for _, s, _ in graded_suites(nb, chapter.slug)]
    assert suites, f"{chapter.slug} has no graded cells with hidden suites"
    if only is not None:
        wrong = {t for t in only if t.partition("::")[0] not in suites}
        assert not wrong, f"control targets {wrong} are not suites"
        suites = only
    return run_suites(student_cells(nb), suites, chapter=chapter.slug, until_first_failure=until_first_failure)


@pytest.mark.parametrize("chapter, notebook", CASES, ids=[f"{c.slug}/{n}" for c, n in CASES])
def test_reference_gets_full_marks(chapter, notebook):
    results = grade(reference(chapter, notebook), chapter)
    for suite, result in results.items():
        bad = [(t.name, t.status, t.message) for t in result.tests if t.status not in ("passed", "blocked")]
        assert not bad, f"{suite}: the reference solution fails {bad}"
        assert result.fraction == 1.0


# The issues ask for at least 3 controls per chapter, more for the core chapters.
MIN_CONTROLS = {"ch03_gpu_fundamentals": 6, "ch04_environment": 6, "ch05_kv_cache": 8, "ch06_scheduling": 6, "ch07_quantization": 10,
                "ch08_speculative_decoding": 10}
CONTROLS = [(ch, c) for ch in course_config.ACTIVE_CHAPTERS for c in controls(ch.slug)]


def test_each_chapter_has_at_least_three_controls():
    for ch in course_config.ACTIVE_CHAPTERS:
        assert len(controls(ch.slug)) >= MIN_CONTROLS.get(ch.slug, 3), f"{ch.slug} has too few negative controls"


@pytest.mark.parametrize("chapter, control", CONTROLS, ids=[f"{c.slug}/{k}" for c, k in CONTROLS])
def test_negative_control_gets_less_than_full_marks(chapter, control):
    """The judge stops at the control's first failing test: one test that fails on the
    control's own account (failed, timed out, crashed; not the grader's error) already
    keeps it below full marks, and the tests after it need not run."""
    code = control_path(chapter.slug, control).read_text()
    caught = []
    for notebook in chapter.notebooks:
        results = grade(with_code(reference(chapter, notebook), code), chapter,
                        control_targets(chapter.slug, control), until_first_failure=True)
        caught += [(suite, t.name, t.status) for suite, r in results.items() for t in r.tests
                   if t.status in ("failed", "timeout", "crashed")]
        if caught:
            break
    assert caught, f"control {control} ({code.splitlines()[0]}) got full marks"
