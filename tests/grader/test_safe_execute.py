"""The kernel run that feeds feedback survives what submissions do to it."""

import nbformat

from grader.nbgrader_plugin import SafeExecute


def run(*sources, tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    resources = {"nbgrader": {"assignment": "ch01_why_optimize"}, "metadata": {"path": str(tmp_path)}}
    SafeExecute().preprocess(nb, resources)
    return [c.outputs for c in nb.cells]


def _text(outputs):
    return " ".join(str(o.get("text", "")) + str(o.get("ename", "")) + str(o.get("data", "")) for o in outputs)


def test_memory_hog_fails_its_own_cell_only(tmp_path):
    outputs = run("x = bytearray(64 * 1024**3)", "print('still here')", tmp_path=tmp_path)
    assert "MemoryError" in _text(outputs[0])
    assert "still here" in _text(outputs[1])


def test_dead_kernel_is_recorded_and_later_cells_are_marked(tmp_path):
    outputs = run("print('before')", "import os; os._exit(1)", "print('after')", tmp_path=tmp_path)
    assert "before" in _text(outputs[0])
    assert "DeadKernelError" in _text(outputs[1])
    assert "not run: the kernel died" in _text(outputs[2])


def test_one_timeout_stops_the_run(tmp_path):
    outputs = run("while True: pass", "print('after')", tmp_path=tmp_path)
    assert "CellTimeoutError" in _text(outputs[0]) or "Timeout" in _text(outputs[0])
    assert "not run: an earlier cell ran past" in _text(outputs[1])
