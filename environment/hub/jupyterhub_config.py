"""The course's JupyterHub on one machine: `make hub`, tested in a real browser by
tests/deploy/test_hub_browser.py.

Who is who: instructors (LLMOPT_HUB_INSTRUCTORS, "instructor" by default) log in with the
instructors' password; they are the hub's admins, in the group `formgrade-<course id>`
with the role `instructor`, and get JupyterLab on the course directory with nbgrader's
formgrader. Everyone else logs in with the class password; students (the group
`nbgrader-<course id>`, role `student`) get JupyterLab on their own folder, with the
instructor-only parts of nbgrader turned off (grader/lab.py) and an Assignments tab on
the course's exchange (course_config.EXCHANGE_DIR in the course directory, the one the
instructors' `nbgrader release_assignment` and `collect` use).

Every port is on 127.0.0.1: the hub, its proxy (configurable-http-proxy, installed by
`make setup` into environment/hub/node_modules from package-lock.json) and every user's
server. Reach it from elsewhere through an SSH tunnel or a TLS-terminating proxy.

Settings, from the environment (`make hub` passes them through):
  LLMOPT_HUB_PORT                 the hub's port on 127.0.0.1 (8000)
  LLMOPT_HUB_DIR                  its runtime folder: database, cookie secret, generated
                                  passwords, the users' home folders (<repository>/hub,
                                  git-ignored)
  LLMOPT_COURSE_DIR               the course directory (this repository)
  LLMOPT_EXCHANGE_DIR             nbgrader's exchange (<course directory>/exchange)
  LLMOPT_HUB_INSTRUCTORS          instructors' user names, comma-separated ("instructor")
  LLMOPT_HUB_STUDENTS             students' user names, comma-separated (unset: any name
                                  may log in with the class password)
  LLMOPT_HUB_PASSWORD             the class password (8 or more characters)
  LLMOPT_HUB_INSTRUCTOR_PASSWORD  the instructors' (32 or more characters)
A password not given is generated once and kept in <hub dir>/passwords.json (mode 0600).

What this hub is not: the simple spawner starts every user's server as the hub's own
user on this machine. Students are not isolated from each other or from the course
directory (which holds the hidden suites and the gradebook): it is for a trial, a
workshop among trusted people, or an instructor's own use. A class needs one container
per student from the student image (not built yet).
"""

import json
import os
import secrets
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import course_config  # noqa: E402
from grader.lab import write_lab_config  # noqa: E402

c = get_config()  # noqa: F821 (provided by traitlets when JupyterHub loads this file)

BIN = Path(sys.executable).parent  # the course's .venv/bin: jupyterhub-singleuser, nbgrader
PROXY = ROOT / "environment" / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
HUB_DIR = Path(os.environ.get("LLMOPT_HUB_DIR") or ROOT / "hub").resolve()
COURSE_DIR = Path(os.environ.get("LLMOPT_COURSE_DIR") or ROOT).resolve()
EXCHANGE = (COURSE_DIR / course_config.EXCHANGE_DIR).resolve()
PORT = int(os.environ.get("LLMOPT_HUB_PORT") or 8000)
LOOPBACK = "127.0.0.1"
INSTRUCTORS = sorted({n.strip() for n in (os.environ.get("LLMOPT_HUB_INSTRUCTORS") or "instructor").split(",")
                      if n.strip()})
STUDENTS = sorted({n.strip() for n in os.environ.get("LLMOPT_HUB_STUDENTS", "").split(",") if n.strip()})
INSTRUCTOR_GROUP = f"formgrade-{course_config.COURSE_ID}"  # nbgrader's names for the two groups
STUDENT_GROUP = f"nbgrader-{course_config.COURSE_ID}"
# JupyterLab's "receive Jupyter news?" pop-up: not for a class.
QUIET_LAB_PLUGINS = ("@jupyterlab/apputils-extension:announcements",)

if not PROXY.exists():
    sys.exit(f"{PROXY} is missing: run `make setup` (it installs configurable-http-proxy with npm)")
HUB_DIR.mkdir(parents=True, exist_ok=True)
EXCHANGE.mkdir(parents=True, exist_ok=True)


def _passwords() -> tuple[str, str]:
    """(class password, instructors' password): from the environment, else generated once
    and kept in HUB_DIR/passwords.json, readable by the hub's user only."""
    path = HUB_DIR / "passwords.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    student = os.environ.get("LLMOPT_HUB_PASSWORD") or stored.get("student")
    instructor = os.environ.get("LLMOPT_HUB_INSTRUCTOR_PASSWORD") or stored.get("instructor")
    if not (student and instructor):
        stored.setdefault("student", secrets.token_urlsafe(9))
        stored.setdefault("instructor", secrets.token_urlsafe(32))
        student, instructor = student or stored["student"], instructor or stored["instructor"]
        path.touch(mode=0o600)
        path.write_text(json.dumps(stored, indent=2) + "\n")
        print(f"course hub: passwords generated, in {path}", file=sys.stderr)
    return student, instructor


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


STUDENT_PASSWORD, INSTRUCTOR_PASSWORD = _passwords()

# ---- the hub and its proxy: loopback only, state in HUB_DIR -------------------------------
c.JupyterHub.bind_url = f"http://{LOOPBACK}:{PORT}"
c.JupyterHub.hub_ip = LOOPBACK
c.JupyterHub.hub_port = _free_port()  # the hub's API and its proxy's: any free ports, so
c.ConfigurableHTTPProxy.api_url = f"http://{LOOPBACK}:{_free_port()}"  # two hubs can run
c.ConfigurableHTTPProxy.command = [str(PROXY)]
c.ConfigurableHTTPProxy.pid_file = str(HUB_DIR / "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{HUB_DIR / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(HUB_DIR / "jupyterhub_cookie_secret")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops every user's server
c.JupyterHub.cleanup_proxy = True

# ---- who may log in, and as what -----------------------------------------------------------
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = STUDENT_PASSWORD
c.SharedPasswordAuthenticator.admin_password = INSTRUCTOR_PASSWORD  # admin_users must use it
c.Authenticator.admin_users = set(INSTRUCTORS)
if STUDENTS:
    c.Authenticator.allowed_users = set(STUDENTS)
else:
    c.Authenticator.allow_all = True
# The password a user logs in with puts them in nbgrader's group for their side.
c.Authenticator.manage_groups = True
c.SharedPasswordAuthenticator.password_groups = {STUDENT_PASSWORD: [STUDENT_GROUP],
                                                 INSTRUCTOR_PASSWORD: [INSTRUCTOR_GROUP]}
c.JupyterHub.load_roles = [
    {"name": "instructor", "groups": [INSTRUCTOR_GROUP],
     "description": "Teaches the course: sees the class, starts and opens students' servers",
     "scopes": ["admin-ui", "list:users", "read:users", "read:groups", "admin:servers",
                "access:servers"]},
    {"name": "student", "groups": [STUDENT_GROUP],
     "description": "Takes the course: their own server only",
     "scopes": ["self"]},
]

# ---- each user's server ----------------------------------------------------------------------
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = str(HUB_DIR / "users" / "{username}")
c.Spawner.ip = LOOPBACK
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 else []
c.Spawner.default_url = "/lab"
# Only what configure_server sets, and the locale: not the hub's PYTHONPATH (the repository,
# grader/ included), nor its LLMOPT_* settings.
c.Spawner.env_keep = ["LANG", "LC_ALL", "JUPYTERHUB_SINGLEUSER_APP"]
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _update_json(path: Path, section: str, values: dict) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault(section, {}).update(values)
    _write_json(path, data)


def _hub_lab(config_dir: Path) -> None:
    """What every hub user's lab gets: no news pop-up, and terminals that keep the
    server's environment (a login shell's /etc/profile would drop .venv/bin from PATH)."""
    _update_json(config_dir / "labconfig" / "page_config.json", "disabledExtensions",
                 {name: True for name in QUIET_LAB_PLUGINS})
    _update_json(config_dir / "jupyter_server_config.json", "ServerApp",
                 {"terminado_settings": {"shell_command": ["/bin/bash"]}})


def student_config(home: Path) -> Path:
    """The student lab's config (grader/lab.py: instructor parts off, the Assignments tab
    on the course's exchange, fetched into and submitted from `home`). nbgrader's student
    id is the hub login: every server runs as the same system user, whose name nbgrader
    would otherwise file every submission under."""
    config_dir = write_lab_config(home, exchange=EXCHANGE)
    (config_dir / "nbgrader_config.py").write_text(
        "# Written by environment/hub/jupyterhub_config.py at each start of this server.\n"
        "import os\n\n"
        "c = get_config()  # noqa: F821\n"
        'c.CourseDirectory.student_id = os.environ["JUPYTERHUB_USER"]\n')
    _hub_lab(config_dir)
    return config_dir


def instructor_config(home: Path) -> Path:
    """The instructor lab's config: the course's own nbgrader_config.py (its
    LLMOPT_COURSE_DIR is set in the server's environment), and formgrader allowed in
    JupyterLab's frame (JupyterHub >= 4.1 forbids frames; nbgrader#1870)."""
    config_dir = home / ".jupyter"
    (config_dir / "nbgrader_config.py").parent.mkdir(parents=True, exist_ok=True)
    (config_dir / "nbgrader_config.py").write_text(
        "# Written by environment/hub/jupyterhub_config.py at each start of this server.\n"
        "c = get_config()  # noqa: F821\n"
        f"load_subconfig({str(ROOT / 'nbgrader_config.py')!r})  # noqa: F821\n"
        "# Every server runs as one system user: a submission's owner is not its student.\n"
        "c.ExchangeCollect.check_owner = False\n")
    _write_json(config_dir / "jupyter_server_config.json", {"ServerApp": {"tornado_settings": {
        "headers": {"Content-Security-Policy": "frame-ancestors 'self'"}}}})
    _hub_lab(config_dir)
    return config_dir


def is_instructor(user) -> bool:
    return user.name in INSTRUCTORS


def configure_server(spawner) -> None:
    """Before each server starts: its folder, its config and its environment."""
    home = Path(spawner.home_dir)
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.pathsep.join([str(BIN), "/usr/local/bin", "/usr/bin", "/bin"]),
        "PYTHONHASHSEED": "0", "OMP_WAIT_POLICY": "PASSIVE",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    }
    if is_instructor(spawner.user):
        config_dir = instructor_config(home)
        spawner.notebook_dir = str(COURSE_DIR)
        # nbgrader and `python -m grader` work on the course and the students' exchange.
        env.update(LLMOPT_COURSE_DIR=str(COURSE_DIR), LLMOPT_EXCHANGE_DIR=str(EXCHANGE), PYTHONPATH=str(ROOT))
    else:
        config_dir = student_config(home)
        spawner.notebook_dir = str(home)
    env["JUPYTER_CONFIG_PATH"] = str(config_dir)
    spawner.environment = {**spawner.environment, **env}


c.Spawner.pre_spawn_hook = configure_server

print(f"course hub: http://{LOOPBACK}:{PORT}/ (instructors: {', '.join(INSTRUCTORS)}; "
      f"students: {', '.join(STUDENTS) or 'any name with the class password'}); "
      f"course directory {COURSE_DIR}, exchange {EXCHANGE}", file=sys.stderr)
