"""The instructors' command line.

  python -m grader check NOTEBOOK            grade one notebook, no course directory needed
  python -m grader autograde CHAPTER [--student ID] [--jobs N] [--course-dir DIR]
                             [--verdicts DIR [--shard I/N]]   (shards: grader/autograde.py)
  python -m grader report [--course-dir DIR] [--csv FILE]
  python -m grader build [CHAPTER ...]       notebooks from their twins, then release/
  python -m grader solutions [CHAPTER ...]   executed reference notebooks in solutions/
  python -m grader demo [--course-dir DIR]   grade the demo class and print its table
  python -m grader leaderboard CHAPTER [--course-dir DIR]   the class ranking a suite records
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import course_config


def cmd_check(args: argparse.Namespace) -> int:
    import os

    import nbformat

    from grader.judge import run_suites
    from grader.notebook import chapter_of, graded_suites, render, source_notebook, student_cells
    from grader.sandbox.bubblewrap import UNSAFE_ENV, SandboxUnavailable

    if args.unsafe_no_sandbox:
        os.environ[UNSAFE_ENV] = "1"
    path = Path(args.notebook)
    try:
        nb = nbformat.read(path, as_version=4)
        chapter = chapter_of(nb, path)
    except Exception as exc:  # unreadable JSON, wrong schema, no chapter: say so plainly
        print(f"{path}: not a readable course notebook ({type(exc).__name__}: {str(exc)[:300]})",
              file=sys.stderr)
        return 2
    source, name = source_notebook(chapter, path.stem)
    if name != path.stem:
        print(f"{path.name} is graded as {chapter}/{name}.ipynb, the chapter it belongs to "
              f"(its file was renamed)")
    suites = graded_suites(source, chapter)  # points from the instructors' notebook
    try:
        results = run_suites(student_cells(nb, source), [s for _, s, _ in suites], chapter=chapter,
                             filename=path.name)
    except SandboxUnavailable as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return 2
    total = earned = 0.0
    for _, suite, points in suites:
        text, score = render(results[suite], points)
        print(text)
        total, earned = total + points, earned + score
    print(f"{path.name}: {earned:g} / {total:g} points")
    return 0 if earned >= total else 1


def cmd_autograde(args: argparse.Namespace) -> int:
    from grader.autograde import autograde
    from grader.sandbox.bubblewrap import SandboxUnavailable, check

    try:
        check()
    except SandboxUnavailable as exc:
        print(f"grader: {exc}", file=sys.stderr)
        return 2
    if args.shard is not None and args.verdicts is None:
        print("grader: --shard needs --verdicts DIR, the folder the merge step reads", file=sys.stderr)
        return 2
    try:
        run = autograde(args.chapter, Path(args.course_dir).resolve(), args.student, args.jobs,
                        verdicts=None if args.verdicts is None else Path(args.verdicts), shard=args.shard)
    except ValueError as exc:  # a verdicts folder the sandbox could see
        print(f"grader: {exc}", file=sys.stderr)
        return 2
    if run is None:  # a shard: its verdicts are in the folder, the gradebook is untouched
        return 0
    print(run.stdout + run.stderr)
    return run.returncode


def _shard(text: str) -> tuple[int, int]:
    """`I/N` -> (I, N), 0 <= I < N: a Kubernetes Indexed Job's JOB_COMPLETION_INDEX and
    its completions."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected I/N, e.g. 0/3") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"{text!r}: I must be one of 0..N-1")
    return index, count


def cmd_report(args: argparse.Namespace) -> int:
    from grader.report import class_table, print_table, write_csv

    rows = class_table(Path(args.course_dir).resolve())
    print_table(rows)
    if args.csv:
        write_csv(rows, Path(args.csv))
        print(f"written {args.csv}")
    return 0


def _chapters(keys: list[str]) -> tuple[course_config.Chapter, ...]:
    """The chapters named on the command line (slug, short name or number); none: all."""
    return tuple(course_config.chapter(k) for k in keys) or course_config.ACTIVE_CHAPTERS


def cmd_build(args: argparse.Namespace) -> int:
    from grader.course import build_notebooks, release

    chapters = _chapters(args.chapters)
    for path in build_notebooks(chapters):
        print(f"built {path.relative_to(course_config.ROOT)}")
    release(chapters=chapters)
    print("release/ regenerated")
    return 0


def cmd_solutions(args: argparse.Namespace) -> int:
    from grader.course import solutions

    solutions(chapters=_chapters(args.chapters))
    print("solutions/ regenerated")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from grader.demo import grade_demo_class
    from grader.report import print_table

    rows = grade_demo_class(Path(args.course_dir).resolve())
    print_table(rows)
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from grader.leaderboard import print_ranking, ranking

    print_ranking(ranking(args.chapter, Path(args.course_dir).resolve()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", help="grade one notebook and print a per-test table")
    p.add_argument("notebook")
    p.add_argument("--unsafe-no-sandbox", action="store_true",
                   help="run student code without bubblewrap: only for your own notebook on your own laptop")
    p.set_defaults(run=cmd_check)
    p = sub.add_parser("autograde", help="nbgrader autograde with the judge")
    p.add_argument("chapter")
    p.add_argument("--student")
    p.add_argument("--jobs", type=int, default=1, help="submissions judged at the same time")
    p.add_argument("--course-dir", default=str(course_config.ROOT))
    p.add_argument("--verdicts", metavar="DIR",
                   help="keep the judge's verdicts in DIR (made if missing) and reuse those there, "
                        "judging only what is missing; DIR must be writable by the grader only")
    p.add_argument("--shard", metavar="I/N", type=_shard,
                   help="only judge shard I of N (every N-th student from the I-th, sorted) into "
                        "--verdicts; no gradebook is written: a run without --shard merges")
    p.set_defaults(run=cmd_autograde)
    p = sub.add_parser("report", help="class table from the gradebook")
    p.add_argument("--course-dir", default=str(course_config.ROOT))
    p.add_argument("--csv")
    p.set_defaults(run=cmd_report)
    for name, run, text in (("build", cmd_build, "notebooks from twins, then release/"),
                            ("solutions", cmd_solutions, "executed solutions/")):
        p = sub.add_parser(name, help=text)
        p.add_argument("chapters", nargs="*", help="only these chapters (default: all)")
        p.set_defaults(run=run)
    p = sub.add_parser("leaderboard", help="class ranking from the autograded notebooks")
    p.add_argument("chapter")
    p.add_argument("--course-dir", default=str(course_config.ROOT))
    p.set_defaults(run=cmd_leaderboard)
    p = sub.add_parser("demo", help="grade the demo class in a scratch course directory")
    p.add_argument("--course-dir", default=str(course_config.ROOT / "build" / "demo_course"))
    p.set_defaults(run=cmd_demo)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
