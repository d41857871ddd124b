"""The students' JupyterLab (`make lab`, grader/lab.py) really serves their workspace
notebooks, keeps their work across rebuilds, and runs without nbgrader's instructor-only
extensions; the instructors' plain `jupyter lab` keeps them."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest

import course_config
from course_config import ROOT
from grader.lab import (INSTRUCTOR_LAB_PLUGINS, fill_workspace, lab_command, lab_environment,
                        write_lab_config)

BIN = Path(sys.executable).parent
NOTEBOOKS = [f"{ch.slug}/{name}.ipynb" for ch in course_config.ACTIVE_CHAPTERS for name in ch.notebooks]
STUDENT_PLUGINS = ("@jupyter/nbgrader:assignment-list", "@jupyter/nbgrader:validate-assignment")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_workspace_gets_missing_chapters_and_never_loses_work(tmp_path):
    workspace = tmp_path / "workspace"
    added = fill_workspace(workspace)
    assert sorted(str(p.relative_to(workspace)) for p in added) == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        assert (workspace / name).read_bytes() == (ROOT / "release" / name).read_bytes()
    mine, gone = workspace / NOTEBOOKS[0], workspace / NOTEBOOKS[-1]
    mine.write_text("my work")
    gone.unlink()
    assert fill_workspace(workspace) == [gone], "only the missing notebook comes back"
    assert mine.read_text() == "my work", "a rebuild must never replace a student's notebook"
    assert fill_workspace(workspace) == []


def test_workspace_refuses_release_and_says_why(tmp_path):
    with pytest.raises(ValueError, match="make release"):
        fill_workspace(ROOT / "release" / "mine")
    with pytest.raises(FileNotFoundError, match="make release"):
        fill_workspace(tmp_path / "workspace", release=tmp_path / "empty_release")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("workspace")
    fill_workspace(workspace)
    mine = nbformat.read(workspace / NOTEBOOKS[0], as_version=4)
    mine.metadata["student_edit"] = True  # a change that only the workspace copy has
    nbformat.write(mine, workspace / NOTEBOOKS[0])
    exchange = tmp_path_factory.mktemp("exchange")
    for assignment in (NOTEBOOKS[0].split("/")[0], "not_fetched_yet"):  # as release_assignment leaves them
        released = exchange / course_config.COURSE_ID / "outbound" / assignment
        released.mkdir(parents=True)
        shutil.copy(ROOT / "release" / NOTEBOOKS[0], released)
    config_dir = write_lab_config(workspace, exchange=exchange)
    port, token = _free_port(), "course-test-token"
    home = tmp_path_factory.mktemp("home")
    env = lab_environment(config_dir, dict(os.environ, HOME=str(home), JUPYTER_RUNTIME_DIR=str(home / "runtime")))
    command = lab_command(workspace, "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
                          f"--IdentityProvider.token={token}")
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("JupyterLab did not start within 120 s")
            time.sleep(1)
    yield base, token, workspace, config_dir
    process.terminate()
    process.wait(timeout=30)


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read().decode()


def _page_config(base, token) -> dict:
    status, page = _get(f"{base}/lab?token={token}")
    assert status == 200 and "JupyterLab" in page
    data = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page, re.S)
    assert data, "the lab page carries no page config"
    return json.loads(data.group(1))


def test_student_lab_serves_the_workspace_notebooks(lab):
    base, token, workspace, _ = lab
    assert Path(_page_config(base, token)["serverRoot"]) == workspace.resolve()
    for name in NOTEBOOKS:
        status, body = _get(f"{base}/api/contents/{name}?token={token}")
        notebook = json.loads(body)["content"]
        assert status == 200 and notebook["cells"], f"{name} did not open"
        assert len(notebook["cells"]) == len(nbformat.read(workspace / name, as_version=4).cells)
    status, body = _get(f"{base}/api/contents/{NOTEBOOKS[0]}?token={token}")
    assert json.loads(body)["content"]["metadata"].get("student_edit"), "served from elsewhere"


def test_student_lab_has_no_instructor_extensions(lab):
    base, token, _, _ = lab
    disabled = set(_page_config(base, token)["disabledExtensions"])
    assert set(INSTRUCTOR_LAB_PLUGINS) <= disabled, disabled
    assert not disabled & set(STUDENT_PLUGINS), "students keep the assignment list and validation"
    for url in ("formgrader", "formgraders"):  # the formgrader and course_list server extensions
        with pytest.raises(urllib.error.HTTPError) as error:
            _get(f"{base}/{url}?token={token}")
        assert error.value.code == 404, f"/{url} answered {error.value.code}: the extension is on"


def test_student_lab_assignments_tab_uses_the_course_exchange_and_workspace(lab):
    base, token, workspace, _ = lab
    status, body = _get(f"{base}/assignments?course_id={course_config.COURSE_ID}&token={token}")
    answer = json.loads(body)
    assert answer["success"], answer
    chapter = NOTEBOOKS[0].split("/")[0]
    listed = {(a["assignment_id"], a["status"]) for a in answer["value"]}
    assert ("not_fetched_yet", "released") in listed, f"the tab does not read the course exchange: {listed}"
    assert (chapter, "fetched") in listed, f"{workspace} is not where the tab looks: {listed}"


def _disabled_in_listing(env=None) -> set:
    run = subprocess.run([str(BIN / "jupyter"), "labextension", "list"], capture_output=True, text=True,
                         timeout=120, env=env)
    listing = run.stdout + run.stderr
    assert "@jupyter/nbgrader" in listing and "enabled" in listing, listing[-2000:]
    after = listing.split("Disabled extensions:", 1)[1] if "Disabled extensions:" in listing else ""
    return {line.strip() for line in after.splitlines() if line.strip().startswith("@")}


def test_labextension_list_with_the_student_config_disables_instructor_plugins(lab):
    _, _, _, config_dir = lab
    disabled = _disabled_in_listing(lab_environment(config_dir))
    assert set(INSTRUCTOR_LAB_PLUGINS) <= disabled and not disabled & set(STUDENT_PLUGINS), disabled


def test_nbgrader_lab_extensions_are_installed_and_on_for_instructors():
    """Without the student config (the instructors' plain `jupyter lab`), nothing of
    nbgrader is disabled: `make lab` changed no global configuration."""
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_CONFIG_PATH"}
    assert not _disabled_in_listing(env) & set(INSTRUCTOR_LAB_PLUGINS)
