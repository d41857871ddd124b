"""The student image's Jupyter configuration, written when the image is built
(Dockerfile.cpu, stage `student-config`): `python student_jupyter.py CONFIG_DIR`.

It is the student lab's own configuration (grader/lab.py: nbgrader's instructor parts off,
the Assignments tab on the course's exchange, fetching into and submitting from the
student's home), for a server that Zero-to-JupyterHub starts in a pod of its own
(environment/k8s/z2jh-values.yaml): the home is /home/jovyan, the exchange a shared volume
at /srv/nbgrader/exchange. Every pod runs as the same user, jovyan, so nbgrader's student
id is the hub login, as on the course hub (environment/hub/jupyterhub_config.py). The
image sets JUPYTER_CONFIG_PATH to CONFIG_DIR; grader/ itself never enters it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from grader.lab import write_lab_config

HOME = Path("/home/jovyan")  # Zero-to-JupyterHub's user and home in a single-user pod
EXCHANGE = Path("/srv/nbgrader/exchange")  # the shared volume's mount (z2jh-values.yaml)


def student_config(config_dir: Path, home: Path = HOME, exchange: Path = EXCHANGE) -> Path:
    """Write the student server's configuration into `config_dir`. On the way it is
    written into `home`/.jupyter, which in the image's build stage is thrown away."""
    written = write_lab_config(home, exchange=exchange)
    (written / "nbgrader_config.py").write_text(
        "# Written by environment/docker/student_jupyter.py when the student image was built.\n"
        "import os\n\n"
        "c = get_config()  # noqa: F821\n"
        'c.CourseDirectory.student_id = os.environ["JUPYTERHUB_USER"]\n')
    shutil.copytree(written, config_dir, dirs_exist_ok=True)
    return config_dir


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} CONFIG_DIR")
    print(f"student Jupyter config in {student_config(Path(sys.argv[1]))}")
