"""nbgrader preprocessors that make autograde safe.

`SafeExecute` runs the submission in a kernel only so that feedback shows its outputs;
unlike nbgrader's `Execute`, a kernel that dies (os._exit, a segfault, the OOM killer)
costs the rest of this notebook's kernel outputs, not the student's whole autograde, and
after one cell times out the rest are not run (they would most likely hang as well:
one timeout per submission, not one per cell). The kernel gets the chapter's memory cap,
so a submission that eats memory fails its own cell instead of starving the grader.

`JudgeCells` is where the scores come from: it hands the sanitized notebook's code to
the judge (grader/judge.py), which runs the hidden suites in worker processes, and
writes each test cell's verdict over whatever the kernel printed there.
"""

from __future__ import annotations

import resource

import nbformat
from nbclient.exceptions import DeadKernelError

import course_config
from nbgrader.preprocessors import Execute, NbGraderPreprocessor

from grader.judge import run_suites
from grader.notebook import graded_suites, student_cells, write_result


class SafeExecute(Execute):
    def preprocess(self, nb, resources=None, km=None):
        self._stopped = ""
        chapter = course_config.chapter(resources["nbgrader"]["assignment"])
        self._cell_timeout = chapter.execute_timeout_s
        self._memory_bytes = 2 * chapter.worker_memory_mb * 1024 * 1024  # plots need headroom
        self._limited_pid = None
        try:
            return super().preprocess(nb, resources, km)
        except DeadKernelError:  # raised again while shutting the dead kernel down
            return nb, resources

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return cell, resources
        if self._stopped:
            cell.outputs = [nbformat.v4.new_output(
                "stream", name="stdout", text=f"(not run: {self._stopped})\n")]
            return cell, resources
        self.timeout = self._cell_timeout  # the chapter's limit (set here: preprocess re-inits traits)
        self._limit_kernel_memory()
        try:
            cell, resources = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self._stopped = "the kernel died in an earlier cell"
            self.log.warning("The kernel died in cell %d; grading goes on without it.", index)
            cell.outputs.append(nbformat.v4.new_output(
                "error", ename="DeadKernelError", evalue="the kernel died while running this cell",
                traceback=["The kernel died while running this cell (os._exit, a crash, or memory)."]))
            return cell, resources
        if any(o.get("ename") == "CellTimeoutError" for o in cell.outputs):
            self._stopped = f"an earlier cell ran past the {self.timeout} s limit"
        return cell, resources


    def _limit_kernel_memory(self) -> None:
        pid = getattr(getattr(self.km, "provisioner", None), "pid", None)
        if pid is None or pid == self._limited_pid:
            return
        try:
            resource.prlimit(pid, resource.RLIMIT_AS, (self._memory_bytes, self._memory_bytes))
            self._limited_pid = pid
        except (OSError, ValueError) as exc:
            self.log.warning("Could not cap the kernel's memory (%s); grading goes on.", exc)


class JudgeCells(NbGraderPreprocessor):
    def preprocess(self, nb, resources):
        chapter = resources["nbgrader"]["assignment"]
        suites = graded_suites(nb, chapter)
        if not suites:
            return nb, resources
        name = f"{resources['nbgrader']['notebook']}.ipynb"
        results = run_suites(student_cells(nb), [s for _, s in suites], chapter=chapter, filename=name)
        for index, suite in suites:
            score = write_result(nb.cells[index], results[suite])
            self.log.info("%s: %s", suite, score)
        return nb, resources
