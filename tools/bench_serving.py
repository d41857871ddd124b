"""The serving benchmark on the instructors' reference components (`make bench`).

    make bench                                  (2 torch threads)
    python tools/bench_serving.py --threads 2 [--sessions 8 --turns 4 --plot FILE]

Chapter 5's `generate_with_cache` and chapter 6's `ContinuousBatchingScheduler` and
`run_batch` are read from the source notebooks (`source/<chapter>/<chapter>.py`, their
setup and solution cells, as the grader assembles a student's code) and handed to
`llmopt.serve_bench.run_serving_benchmark`, which replays a 32-request chat trace through
`transformers.generate` and the course engine. The output ends with exactly two lines:

    batch-1 speed-up vs generate: N.NNx
    trace speed-up vs one-at-a-time generate: N.NNx
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def chapter_namespace(slug: str) -> dict:
    """The reference code of a chapter: its setup and solution cells, run in order in one
    namespace (demo and test cells are skipped, as when the grader builds a student's
    code). The jupytext source is read, so the namespace follows the latest edit."""
    import jupytext

    from grader.notebook import student_cells

    nb = jupytext.read(ROOT / "source" / slug / f"{slug}.py")
    namespace = {"__name__": f"reference_{slug}"}
    for cell in student_cells(nb):
        exec(compile(cell["source"], f"<{slug} {cell['name']}>", "exec"), namespace)
    return namespace


def reference_components() -> dict:
    """generate_with_cache (chapter 5), scheduler_cls and run_batch (chapter 6)."""
    ch05, ch06 = chapter_namespace("ch05_kv_cache"), chapter_namespace("ch06_scheduling")
    return {"generate_with_cache": ch05["generate_with_cache"],
            "scheduler_cls": ch06["ContinuousBatchingScheduler"], "run_batch": ch06["run_batch"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--sessions", type=int, default=8, help="chat sessions (default 8)")
    parser.add_argument("--turns", type=int, default=4, help="turns per session (default 4)")
    parser.add_argument("--static-batch", type=int, default=8, help="static batch size")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat the four runs; speed-ups are medians over rounds")
    parser.add_argument("--plot", default=str(ROOT / "build" / "bench_serving.png"),
                        help="where to save the plot (default build/bench_serving.png)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from llmopt.models import load_model, load_tokenizer
    from llmopt.serve_bench import ENGINE_BATCH_1, ENGINE_TRACE, chat_workload, run_serving_benchmark

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model, tokenizer = load_model("course-lm"), load_tokenizer("course-lm")
    workload = chat_workload(tokenizer, n_sessions=args.sessions, turns=args.turns)
    from llmopt.device import calibrate

    copy = calibrate("cpu").copy_bytes_per_s  # the ceiling, measured before the runs
    report = run_serving_benchmark(model, workload, static_batch_size=args.static_batch,
                                   progress=not args.no_progress, copy_bytes_per_s=copy,
                                   rounds=args.rounds,
                                   **reference_components())
    print()
    print(report.table())
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    report.plot()
    plt.savefig(args.plot)
    print(f"plot: {args.plot}; the whole benchmark took {time.perf_counter() - started:.0f} s")
    print(f"batch-1 speed-up vs generate: {report.speedup(ENGINE_BATCH_1):.2f}x")
    print(f"trace speed-up vs one-at-a-time generate: {report.speedup(ENGINE_TRACE):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
