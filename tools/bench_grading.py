"""What the grader's safety and parallelism cost and gain, measured here (a benchmark, not
a test: run it on a quiet machine and quote its output).

    python tools/bench_grading.py [--submissions 20] [--pairs 3]

1. Sandbox overhead: chapter 1's hidden suites on the reference solution, judged with
   workers in bubblewrap and without (GRADER_UNSAFE_NO_SANDBOX=1), alternating; the
   median of paired ratios.
2. A class: N copies of chapter 1's reference submitted to a scratch course, graded with
   `--jobs 1` and `--jobs 2`; wall times, their ratio, and whether the scores agree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

import course_config  # noqa: E402
from grader.autograde import autograde  # noqa: E402
from grader.course import scratch_course  # noqa: E402
from grader.demo import solved  # noqa: E402
from grader.judge import run_suites  # noqa: E402
from grader.notebook import graded_suites, student_cells  # noqa: E402
from grader.report import class_table  # noqa: E402
from grader.sandbox.bubblewrap import UNSAFE_ENV  # noqa: E402

CHAPTER = course_config.chapter("ch01")


def sandbox_overhead(pairs: int) -> None:
    source = nbformat.read(ROOT / "source" / CHAPTER.slug / f"{CHAPTER.notebooks[0]}.ipynb", as_version=4)
    cells, suites = student_cells(source), [s for _, s, _ in graded_suites(source, CHAPTER.slug)]
    ratios = []
    for pair in range(pairs):
        seconds = {}
        for unsafe in ((False, True) if pair % 2 == 0 else (True, False)):
            os.environ[UNSAFE_ENV] = "1" if unsafe else ""
            start = time.perf_counter()
            results = run_suites(cells, suites, chapter=CHAPTER.slug)
            seconds[unsafe] = time.perf_counter() - start
            assert all(r.fraction == 1.0 for r in results.values()), "the reference must pass"
        os.environ[UNSAFE_ENV] = ""
        ratios.append(seconds[False] / seconds[True])
        print(f"pair {pair + 1}: sandboxed {seconds[False]:.1f} s, unconfined {seconds[True]:.1f} s")
    print(f"sandbox overhead per suite run (chapter 1, 3 suites): median {statistics.median(ratios):.3f}x "
          f"over {pairs} pairs")


def class_speedup(submissions: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-class-") as tmp:
        course = scratch_course(Path(tmp) / "course", [CHAPTER])
        name = CHAPTER.notebooks[0]
        release_nb = nbformat.read(course / "release" / CHAPTER.slug / f"{name}.ipynb", as_version=4)
        source_nb = nbformat.read(ROOT / "source" / CHAPTER.slug / f"{name}.ipynb", as_version=4)
        for i in range(submissions):
            folder = course / "submitted" / f"student{i:02d}" / CHAPTER.slug
            folder.mkdir(parents=True)
            (folder / "timestamp.txt").write_text("2026-11-26 09:00:00.000000 UTC\n")
            nb = solved(release_nb, source_nb)
            # Each student's own code (identical code would be judged once for all).
            next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")).source += f"\n# student {i}\n"
            nbformat.write(nb, folder / f"{name}.ipynb")
        wall, scores = {}, {}
        for jobs in (1, 2):
            start = time.perf_counter()
            run = autograde(CHAPTER.slug, course, jobs=jobs)
            wall[jobs] = time.perf_counter() - start
            assert run.returncode == 0, run.stderr[-2000:]
            scores[jobs] = {(r["student"], r["chapter"]): r["score"] for r in class_table(course)}
        print(f"{submissions} chapter 1 submissions: --jobs 1 {wall[1]:.0f} s, --jobs 2 {wall[2]:.0f} s, "
              f"ratio (jobs 2 / jobs 1) {wall[2] / wall[1]:.2f}; same scores: {scores[1] == scores[2]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    sandbox_overhead(args.pairs)
    class_speedup(args.submissions)


if __name__ == "__main__":
    main()
