"""JupyterLab really serves the student notebooks, with nbgrader's extensions installed."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import course_config
from course_config import ROOT

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    port, token = _free_port(), "course-test-token"
    home = tmp_path_factory.mktemp("home")
    process = subprocess.Popen(
        [str(BIN / "jupyter"), "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT / 'release'}", "--allow-root"],
        env=dict(os.environ, HOME=str(home), JUPYTER_RUNTIME_DIR=str(home / "runtime")),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
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
    yield base, token
    process.terminate()
    process.wait(timeout=30)


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.read().decode()


def test_lab_page_and_every_release_notebook_open(lab):
    base, token = lab
    status, page = _get(f"{base}/lab?token={token}")
    assert status == 200 and "JupyterLab" in page
    for ch in course_config.ACTIVE_CHAPTERS:
        for name in ch.notebooks:
            status, body = _get(f"{base}/api/contents/{ch.slug}/{name}.ipynb?token={token}")
            notebook = json.loads(body)["content"]
            assert status == 200 and notebook["cells"], f"{ch.slug}/{name}.ipynb did not open"


def test_nbgrader_lab_extensions_are_installed():
    run = subprocess.run([str(BIN / "jupyter"), "labextension", "list"], capture_output=True, text=True, timeout=120)
    listing = run.stdout + run.stderr
    assert "@jupyter/nbgrader" in listing and "enabled" in listing, listing[-2000:]
