"""The course hub (environment/hub/jupyterhub_config.py, `make hub`) end to end, in a real
browser: Playwright drives Debian's Chromium (no browser is downloaded).

A hub starts on a free loopback port for a scratch copy of the course (chapter 1 built
and released into its exchange while the hub starts), and:
1. the student logs in, opens the Assignments tab, fetches chapter 1, writes one answer
   in the notebook's editor, saves, validates (nbgrader's Validate button) and submits;
2. the instructor, logged in meanwhile, opens a terminal in their JupyterLab and types the
   grading lines of the README's instructor block as written (`nbgrader collect`,
   `nbgrader autograde`, whose judge runs the student's code in the sandbox, `nbgrader
   generate_feedback`), then `nbgrader release_feedback`; formgrader's student list then
   shows the score;
3. the student fetches the feedback from the Assignments tab and opens it: the score is
   there, the one the gradebook holds.
A screenshot of each step is written to build/hub-screenshots/ (git-ignored). The hub and
everything it started (proxy, servers, kernels, terminals) are stopped at the end, also
on failure.

Skipped only where Chromium is absent and cannot be installed (not root): as root, `make
setup` installs it, so there its absence is a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import psutil
import pytest
from nbgrader.api import Gradebook

import course_config
from course_config import ROOT
from grader.course import nbgrader, scratch_course
from grader.demo import solution_sources

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HUB_CONFIG = ROOT / "environment" / "hub" / "jupyterhub_config.py"
PROXY = ROOT / "environment" / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
SHOTS = ROOT / "build" / "hub-screenshots"
BIN = Path(sys.executable).parent
CHAPTER = course_config.chapter("ch01")
SLUG = CHAPTER.slug
ANSWER, ANSWER_TEST = "cost_per_million_solution", "cost_per_million"  # the one answer written
STUDENT, INSTRUCTOR = "alice", "instructor"
STUDENT_PASSWORD, INSTRUCTOR_PASSWORD = "class-password", "instructors-password-" + "x" * 16
HUB_START_S, STEP_MS, GRADING_S, STOP_S = 60, 60_000, 180, 20
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]

if not Path(CHROMIUM).exists() and os.geteuid() != 0:
    pytest.skip(f"no Chromium at {CHROMIUM}, and not root to install it: the hub's browser test "
                f"needs Debian's 'chromium' package (as root, `make setup` installs it)",
                allow_module_level=True)


def readme_grading_lines() -> list[str]:
    """The instructor's grading lines of the README's instructor block, comments removed."""
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## For instructors\n(.*?)(?=^## |\Z)", readme, re.S | re.M).group(1)
    block = re.search(r"^```bash\n(.*?)^```", section, re.S | re.M).group(1)
    lines = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    wanted = ("nbgrader collect ", "nbgrader autograde ", "nbgrader generate_feedback ")
    picked = [line for line in lines if line.startswith(wanted)]
    assert [line.split()[1] for line in picked] == ["collect", "autograde", "generate_feedback"], picked
    return picked


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _stop(process: subprocess.Popen, proxy_pid_file: Path) -> None:
    """Stop the hub as `kill` would, and check that it stopped all it started (its proxy,
    the users' servers and their kernels and terminals, each leading a process group of
    its own); SIGKILL, by process group, whatever outlived it, then fail."""
    try:
        hub = psutil.Process(process.pid)
        started = [hub, *hub.children(recursive=True)]
    except psutil.NoSuchProcess:  # the hub died early: its proxy may have outlived it
        started = []
        with contextlib.suppress(ValueError, OSError, psutil.NoSuchProcess):
            proxy = psutil.Process(int(proxy_pid_file.read_text()))
            if "configurable-http-proxy" in " ".join(proxy.cmdline()):
                started = [proxy]
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_S)
    psutil.wait_procs([p for p in started if p.pid != process.pid], timeout=STOP_S)
    outlived = [p for p in started if _alive(p)]
    own_group = os.getpgrp()
    for proc in outlived:
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            group = os.getpgid(proc.pid)
            if group != own_group:
                os.killpg(group, signal.SIGKILL)
            proc.kill()
    psutil.wait_procs(outlived, timeout=5)
    survivors = [p.pid for p in outlived if _alive(p)]
    assert not outlived, (f"processes outlived the hub's shutdown: {[p.pid for p in outlived]}, "
                          f"killed; still alive: {survivors}")


@contextlib.contextmanager
def running_hub(course_dir: Path, exchange: Path, hub_dir: Path, home: Path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMOPT_", "JUPYTER"))}
    env.update(LLMOPT_HUB_DIR=str(hub_dir), LLMOPT_COURSE_DIR=str(course_dir), LLMOPT_EXCHANGE_DIR=str(exchange),
               LLMOPT_HUB_PORT=str(port), LLMOPT_HUB_STUDENTS=STUDENT, LLMOPT_HUB_INSTRUCTORS=INSTRUCTOR,
               LLMOPT_HUB_PASSWORD=STUDENT_PASSWORD, LLMOPT_HUB_INSTRUCTOR_PASSWORD=INSTRUCTOR_PASSWORD,
               HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    hub_dir.mkdir(parents=True)
    log_path = hub_dir / "hub.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(HUB_CONFIG)], cwd=hub_dir, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HUB_START_S
        while True:
            try:
                with urllib.request.urlopen(f"{base}/hub/api", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            log_tail = log_path.read_text()[-4000:] if process.poll() is not None else ""
            assert process.poll() is None, f"the hub exited ({process.returncode}):\n{log_tail}"
            assert time.monotonic() < deadline, f"no hub after {HUB_START_S} s:\n{log_path.read_text()[-4000:]}"
            time.sleep(0.2)
        yield base
    finally:
        _stop(process, hub_dir / "proxy.pid")


class Shots:
    """Numbered screenshots of each step in build/hub-screenshots/, and when each was taken."""

    def __init__(self):
        shutil.rmtree(SHOTS, ignore_errors=True)
        SHOTS.mkdir(parents=True)
        self.count, self.started, self.times = 0, time.monotonic(), []

    def __call__(self, page, name: str) -> Path:
        self.count += 1
        path = SHOTS / f"{self.count:02d}-{name}.png"
        page.screenshot(path=str(path))
        self.mark(path.name)
        return path

    def mark(self, name: str) -> None:
        self.times.append(f"{time.monotonic() - self.started:6.1f} s  {name}")


def log_in(browser, base: str, user: str, password: str):
    """A fresh browser context that submits the hub's login form (the hub then starts the
    user's server; see in_lab)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(STEP_MS)
    page = context.new_page()
    page.goto(f"{base}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")
    return page


def in_lab(page, user: str):
    """`page` once the user's JupyterLab has loaded, with nbgrader's menu."""
    page.wait_for_url(f"**/user/{user}/lab**", timeout=90_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").wait_for()
    return page


def open_menu_item(page, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=menu).click()
    page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


def assignment_row(page, section: str):
    """The chapter's row in a section of the Assignments tab (released, fetched, submitted)."""
    rows = page.locator(f"#nbgrader-assignment-list #{section}_assignments_list .list_item")
    return rows.filter(has_text=SLUG).first


def saved_answer(path: Path) -> str | None:
    """The answer cell's text in the notebook as saved on disk."""
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # being written
        return None
    return next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == ANSWER)


def release_chapter(course_dir: Path, exchange: Path) -> None:
    """The instructors' side before class: chapter 1 built, in the gradebook, released."""
    scratch_course(course_dir, (CHAPTER,))
    nbgrader("release_assignment", SLUG, "--force", course_dir=course_dir,
             env={"LLMOPT_EXCHANGE_DIR": str(exchange)})


def test_student_and_instructor_round_trip_in_a_browser(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: `make setup` installs it as root"
    assert PROXY.exists(), f"{PROXY} is missing: `make setup` installs it (npm ci)"
    source_nb = nbformat.read(ROOT / "source" / SLUG / f"{SLUG}.ipynb", as_version=4)
    answer = solution_sources(source_nb)[ANSWER]
    cells = [c.metadata.get("nbgrader", {}) for c in source_nb.cells]
    earned = float(next(m["points"] for m in cells if m.get("grade_id") == ANSWER_TEST))
    total = float(sum(m.get("points", 0) for m in cells if m.get("grade")))
    grading = " && ".join(readme_grading_lines() + [f"nbgrader release_feedback {SLUG}"])
    course, exchange, hub_dir = tmp_path / "course", tmp_path / "exchange", tmp_path / "hub"
    alice_home = hub_dir / "users" / STUDENT
    shot = Shots()

    with ThreadPoolExecutor(1) as pool, sync_playwright() as pw:
        released = pool.submit(release_chapter, course, exchange)  # while the hub and the lab start
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            with running_hub(course, exchange, hub_dir, tmp_path / "home") as base:
                shot.mark("hub up")
                # ---- 1. the student: fetch, answer, validate, submit --------------------------
                student = in_lab(log_in(browser, base, STUDENT, STUDENT_PASSWORD), STUDENT)
                shot(student, "student-lab")
                # The instructor logs in now: their server starts while the student works.
                instructor = log_in(browser, base, INSTRUCTOR, INSTRUCTOR_PASSWORD)
                released.result()
                shot.mark("chapter released")
                open_menu_item(student, "Nbgrader", "Assignment List")
                assignment_row(student, "released").get_by_role("button", name="Fetch").click()
                fetched = assignment_row(student, "fetched")
                fetched.wait_for()
                shot(student, "student-fetched")
                assert (alice_home / SLUG / f"{SLUG}.ipynb").is_file(), "the fetch missed the student's folder"

                fetched.locator(".assignment-notebooks-link").click()
                student.locator("#nbgrader-assignment-list .nested_list_item a", has_text=SLUG).first.click()
                notebook = student.locator(".jp-NotebookPanel:visible")
                cell = notebook.locator(".jp-CodeCell").filter(has_text="def cost_per_million_tokens").first
                cell.locator(".cm-content").click()
                student.keyboard.press("ControlOrMeta+a")
                student.keyboard.insert_text(answer)
                expect(cell).not_to_contain_text("NotImplementedError")
                student.keyboard.press("ControlOrMeta+s")
                deadline = time.monotonic() + 30
                while (written := saved_answer(alice_home / SLUG / f"{SLUG}.ipynb")) != answer:
                    assert time.monotonic() < deadline, f"the editor did not save the answer as typed:\n{written}"
                    time.sleep(0.2)
                shot(student, "student-answer")

                notebook.get_by_role("button", name="Validate").click()
                dialog = student.locator(".jp-Dialog")
                dialog.wait_for(timeout=120_000)
                shot(student, "student-validated")
                # The written answer passes its visible checks; the first failure is the next exercise.
                expect(dialog).to_contain_text("optimization_roi")
                expect(dialog).to_contain_text("NotImplementedError")
                dialog.get_by_role("button").last.click()

                student.locator(".lm-TabBar-tab", has_text="Assignments").click()
                fetched.get_by_role("button", name="Submit").click()
                assignment_row(student, "submitted").wait_for()
                shot(student, "student-submitted")
                inbound = list((exchange / course_config.COURSE_ID / "inbound").glob(f"{STUDENT}+{SLUG}+*"))
                assert inbound, "the submission is not filed under the student's hub name"

                # ---- 2. the instructor: collect, autograde (sandboxed judge), feedback --------
                in_lab(instructor, INSTRUCTOR)
                instructor.locator(".jp-LauncherCard", has_text="Terminal").first.click()
                instructor.locator(".jp-Terminal:visible .xterm-helper-textarea").focus()
                done = hub_dir / "users" / INSTRUCTOR / "graded.exit"
                shot.mark("instructor's terminal")
                instructor.keyboard.insert_text(f'cd "$LLMOPT_COURSE_DIR" && {grading}; echo $? > {done}')
                instructor.keyboard.press("Enter")
                deadline = time.monotonic() + GRADING_S
                while not (done.exists() and done.read_text().strip()):
                    assert time.monotonic() < deadline, f"the grading commands took over {GRADING_S} s"
                    time.sleep(0.3)
                shot(instructor, "instructor-graded")
                assert done.read_text().strip() == "0", "an instructor command failed: see the screenshot"
                with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_config.COURSE_ID) as gradebook:
                    graded = gradebook.find_submission(SLUG, STUDENT)
                    assert (graded.score, graded.max_score) == (earned, total), (graded.score, graded.max_score)

                open_menu_item(instructor, "Nbgrader", "Formgrader")
                formgrader = instructor.frame_locator("#formgrader-iframe iframe")
                formgrader.get_by_role("link", name="Manage Students").click()
                expect(formgrader.locator("tr", has_text=STUDENT)).to_contain_text(f"{earned:g} / {total:g}")
                shot(instructor, "instructor-formgrader")

                # ---- 3. the student: fetch the feedback, read the score -----------------------
                student.locator("#refresh_assignments_list").click()
                submitted = assignment_row(student, "submitted")
                submitted.get_by_role("button", name="Fetch Feedback").click()
                submitted.get_by_text("view feedback").click()
                student.locator(".jp-DirListing-item", has_text=".html").first.dblclick()
                score = f"{SLUG} (Score: {earned:.1f} / {total:.1f})"
                expect(student.frame_locator(".jp-HTMLViewer:visible iframe").get_by_text(score)).to_be_visible()
                shot(student, "student-feedback")
            shot.mark("hub stopped")
        finally:
            browser.close()
    print("\n".join(shot.times))
    print(f"screenshots in {SHOTS}")
