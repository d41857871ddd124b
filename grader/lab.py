"""The students' JupyterLab (`make lab`, i.e. `python -m grader.lab [jupyter lab options]`).

Students work in their workspace (course_config.WORKSPACE_DIR, `workspace/` by default,
git-ignored), never in release/, which every `make release` regenerates. Each start copies
into the workspace the release files it lacks (a new chapter, a notebook the student
deleted to start over) and never replaces one that is there, like nbgrader's
`fetch_assignment --replace`, which fills the same folder from the exchange.

The lab runs with a configuration folder of its own, <workspace>/.jupyter, put first on
JUPYTER_CONFIG_PATH for this process only (the global and the user's Jupyter config are
left alone). It turns off nbgrader's instructor-only parts: the create-assignment and
formgrader lab plugins, the courses list, and their server extensions. It also points the
lab's Assignments tab at the course's exchange and this workspace.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import course_config
from course_config import ROOT

INSTRUCTOR_LAB_PLUGINS = (
    "@jupyter/nbgrader:create-assignment",
    "@jupyter/nbgrader:formgrader",
    "@jupyter/nbgrader:course-list",
)
INSTRUCTOR_SERVER_EXTENSIONS = (
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.course_list",
)
SKIPPED = (".ipynb_checkpoints", "__pycache__")


def workspace_dir() -> Path:
    return (ROOT / course_config.WORKSPACE_DIR).resolve()


def exchange_dir() -> Path:
    return (ROOT / course_config.EXCHANGE_DIR).resolve()


def fill_workspace(workspace: Path, release: Path = ROOT / "release",
                   chapters=course_config.ACTIVE_CHAPTERS) -> list[Path]:
    """Copy into `workspace`/<chapter>/ each file of release/<chapter>/ that is not there
    yet; never replace one. Returns the files added."""
    workspace, release = workspace.resolve(), release.resolve()
    if workspace == release or release in workspace.parents or workspace in release.parents:
        raise ValueError(f"the workspace {workspace} must not be inside release/ or hold it: "
                         f"`make release` regenerates release/ and would overwrite the work there; "
                         f"set LLMOPT_WORKSPACE_DIR to another folder")
    added = []
    for ch in chapters:
        source = release / ch.slug
        if not any(source.glob("*.ipynb")):
            raise FileNotFoundError(f"{source} holds no notebook: run `make release` first")
        for path in sorted(source.rglob("*")):
            if path.is_dir() or any(part in SKIPPED for part in path.relative_to(source).parts):
                continue
            target = workspace / ch.slug / path.relative_to(source)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                added.append(target)
    return added


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def write_lab_config(workspace: Path, exchange: Path | None = None) -> Path:
    """The student lab's own Jupyter config folder, <workspace>/.jupyter (rewritten at each
    start; the lab's user settings, which JupyterLab keeps elsewhere, are not touched)."""
    workspace = workspace.resolve()
    exchange = (exchange or exchange_dir()).resolve()
    config_dir = workspace / ".jupyter"
    _write_json(config_dir / "labconfig" / "page_config.json",
                {"disabledExtensions": {name: True for name in INSTRUCTOR_LAB_PLUGINS}})
    _write_json(config_dir / "jupyter_server_config.json",
                {"ServerApp": {"jpserver_extensions": {name: False for name in INSTRUCTOR_SERVER_EXTENSIONS}}})
    # The Assignments tab (nbgrader's assignment_list extension) reads nbgrader config
    # from here: the course's exchange, fetched into and submitted from this workspace.
    _write_json(config_dir / "nbgrader_config.json", {
        "CourseDirectory": {"course_id": course_config.COURSE_ID},
        "Exchange": {"root": str(exchange), "assignment_dir": str(workspace),
                     "cache": str(workspace / ".nbgrader_cache")},
    })
    return config_dir


def lab_environment(config_dir: Path, base: dict | None = None) -> dict:
    """`base` (os.environ) with `config_dir` first on JUPYTER_CONFIG_PATH."""
    env = dict(os.environ if base is None else base)
    rest = env.get("JUPYTER_CONFIG_PATH")
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join([str(config_dir), *([rest] if rest else [])])
    return env


def lab_command(workspace: Path, *options: str) -> list[str]:
    jupyter = Path(sys.executable).parent / "jupyter"
    as_root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    return [str(jupyter), "lab", f"--ServerApp.root_dir={workspace.resolve()}", *as_root, *options]


def main(argv: list[str] | None = None) -> int:
    options = sys.argv[1:] if argv is None else argv
    workspace = workspace_dir()
    try:
        added = fill_workspace(workspace)
    except (FileNotFoundError, ValueError) as exc:
        print(f"make lab: {exc}", file=sys.stderr)
        return 2
    for path in added:
        print(f"added {os.path.relpath(path)}")
    config_dir = write_lab_config(workspace)
    print(f"JupyterLab on {workspace}: open <chapter>/<chapter>.ipynb there "
          f"(your notebooks are never replaced; release/ is not yours to edit)")
    command = lab_command(workspace, *options)
    os.execve(command[0], command, lab_environment(config_dir))
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
