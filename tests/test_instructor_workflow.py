"""The README's instructor workflow, verbatim, on a fresh copy of the repository.

The first bash block of the README's "For instructors" section is read from README.md (so
the README and this test cannot drift apart) and run line by line, in order, in a copy of
the repository's files (what git tracks plus new files it does not ignore: the working
tree as it would be committed), with the repository's .venv linked in. Each command must
exit 0; autograde must leave a row in the copy's gradebook and feedback must be written;
`git status` must stay clean (nbgrader's working folders are ignored); and nothing may be
written outside the copy: no /usr/local/share/nbgrader, nothing in a fresh $HOME.

Not run here: the README's second block (`python -m grader ...`). Its lines hold
placeholders (`path/to/notebook.ipynb`, `[--student ID]`) and the demo class takes
minutes; tests/test_pipeline.py runs those commands.
"""

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

import course_config
from course_config import ROOT

CHAPTER = "ch01_why_optimize"  # the chapter the README's block names
GLOBAL_EXCHANGE = Path("/usr/local/share/nbgrader")  # nbgrader's default exchange root
COMMAND_TIMEOUT_S = 300


def instructor_commands(readme: str) -> list[str]:
    """The command lines of the first ```bash block under "## For instructors"."""
    section = re.search(r"^## For instructors\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert section, 'README.md has no "## For instructors" section'
    block = re.search(r"^```bash\n(.*?)^```", section.group(1), re.S | re.M)
    assert block, 'the "For instructors" section of README.md has no ```bash block'
    text = block.group(1).replace("\\\n", " ")  # join continued lines
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def fresh_copy(dest: Path) -> Path:
    """The repository's files as git would commit them (tracked, and untracked but not
    ignored), in a new git repository whose one commit holds them all; .venv is a link."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is skipped
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name, follow_symlinks=False)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "fresh clone"]):
        subprocess.run([*git, *args], cwd=dest, check=True, capture_output=True)
    return dest


def _files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_readme_instructor_block_names_the_round_trip():
    commands = instructor_commands((ROOT / "README.md").read_text())
    steps = [c.split()[1] for c in commands if c.startswith("nbgrader ")]
    assert steps == ["generate_assignment", "release_assignment", "fetch_assignment", "submit",
                     "collect", "autograde", "generate_feedback"], steps
    assert all(CHAPTER in c for c in commands if c.startswith("nbgrader "))


def test_readme_instructor_block_runs_verbatim_on_a_fresh_clone(tmp_path):
    commands = instructor_commands((ROOT / "README.md").read_text())
    copy = fresh_copy(tmp_path / "clone")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LLMOPT_", "JUPYTER_")) and k != "PYTHONPATH"}
    env.update(HOME=str(home), PWD=str(copy))
    global_before = _files_under(GLOBAL_EXCHANGE)
    repo_before = {p.name for p in ROOT.iterdir()}

    exports, timings = [], []
    for command in commands:
        started = time.monotonic()
        run = subprocess.run(["bash", "-c", "\n".join([*exports, command])], cwd=copy, env=env,
                             capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        timings.append(f"{time.monotonic() - started:6.1f} s  {command}")
        assert run.returncode == 0, (f"README command failed (exit {run.returncode}): {command}\n"
                                     f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
        if command.startswith("export "):
            exports.append(command)
    print("\n".join(timings))

    with Gradebook(f"sqlite:///{copy / 'gradebook.db'}", course_config.COURSE_ID) as gradebook:
        submissions = gradebook.find_assignment(CHAPTER).submissions
        rows = [(s.student.id, s.max_score) for s in submissions]
    assert rows and all(max_score > 0 for _, max_score in rows), f"autograde left no graded row: {rows}"
    student = rows[0][0]
    assert list((copy / "autograded" / student / CHAPTER).glob("*.ipynb")), "no autograded notebook"
    assert list((copy / "feedback" / student / CHAPTER).glob("*.html")), "no feedback page"
    assert list((copy / "exchange" / course_config.COURSE_ID / "outbound" / CHAPTER).glob("*.ipynb"))
    assert list((copy / "workspace" / CHAPTER).glob("*.ipynb")), "the student's fetch went elsewhere"

    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=copy,
                            capture_output=True, text=True, check=True).stdout
    assert not status, f"the workflow left files git does not ignore, or changed committed ones:\n{status}"
    assert _files_under(GLOBAL_EXCHANGE) == global_before, f"nbgrader wrote to {GLOBAL_EXCHANGE}"
    assert not _files_under(home), f"the workflow wrote into $HOME: {_files_under(home)[:10]}"
    new_in_repo = {p.name for p in ROOT.iterdir()} - repo_before
    assert not new_in_repo & {"exchange", "workspace", "submitted", "autograded", "feedback"}, (
        f"the copy's workflow wrote into the repository itself: {new_in_repo}")
