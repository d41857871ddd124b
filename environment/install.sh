#!/usr/bin/env bash
# The course's one install, used everywhere: `make setup` runs it for the repository's
# .venv (developers, CI), and both images run it when they are built (environment/docker/).
#
#   environment/install.sh [--venv DIR] [--torch-index URL] [--vllm DIR]
#
# DIR (default: .venv in the repository) becomes a Python 3.11 virtual environment holding
# exactly environment/requirements.txt and the course library (llmopt, course_config),
# installed in place (editable: course_config finds models/ beside it). Idempotent: on a
# complete environment it installs and removes nothing (pip finds every pin satisfied, the
# course library already in place), so it is safe to run on an environment in use;
# tests/deploy/test_deploy_files.py runs it on the repository's own .venv.
#
#   --torch-index URL  take torch, at the version requirements.txt pins, from this package
#                      index first: the CPU image names PyTorch's CPU index, since pip's
#                      default torch is the CUDA build (gigabytes). Without it torch comes
#                      as pip finds it: the CPU build where a local wheel folder offers it
#                      (the course's CI machines, pip's find-links), else the default
#                      CUDA build (the GPU image).
#   --vllm DIR         also a second environment, DIR, with vLLM as
#                      environment/requirements-vllm.txt pins it (the GPU image's optional
#                      extra). vLLM 0.33.0 pins torch 2.14.0, which the course's environment
#                      (torch 2.13.0) cannot hold, so it never shares one; the CPU setup
#                      never has it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv" TORCH_INDEX="" VLLM_VENV=""
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV="$2"; shift 2 ;;
    --torch-index) TORCH_INDEX="$2"; shift 2 ;;
    --vllm) VLLM_VENV="$2"; shift 2 ;;
    *) echo "usage: $0 [--venv DIR] [--torch-index URL] [--vllm DIR]" >&2; exit 2 ;;
  esac
done

# pip's output, less its warnings about index locations this machine cannot read; pip's
# own exit status is kept (pipefail).
quiet() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }

new_venv() {  # a Python 3.11 virtual environment at $1, unless one is there
  [ -x "$1/bin/python" ] || python3.11 -m venv "$1"
}

VENV="$(realpath -m "$VENV")" VLLM_VENV="${VLLM_VENV:+$(realpath -m "$VLLM_VENV")}"

new_venv "$VENV"
PY="$VENV/bin/python"
if [ -n "$TORCH_INDEX" ]; then
  quiet "$PY" -m pip install -q --index-url "$TORCH_INDEX" \
    "$(grep '^torch==' "$ROOT/environment/requirements.txt")"
fi
# jsonschema's optional IRI format checker (rfc3987-syntax) builds ~35 Lark parsers each
# time nbformat is imported: 2-3 s in every nbgrader call, judge and notebook check. No
# Jupyter schema uses those formats (python-jsonschema/jsonschema#1428), so it goes.
REMOVED=(rfc3987-syntax lark)
# pip runs only where a pin is missing (the check below: every pin installed at its version,
# a local label such as torch's +cpu aside): pip would take seconds to find them all
# satisfied, and would put back the packages removed above.
if ! "$PY" -I - "$ROOT/environment/requirements.txt" "${REMOVED[@]}" <<'EOF'
import importlib.metadata, re, sys
key = lambda name: re.sub(r"[-_.]+", "-", name).lower()
installed = {key(d.metadata["Name"]): d.version.split("+")[0] for d in importlib.metadata.distributions()}
pins = [line.strip().split("==") for line in open(sys.argv[1]) if "==" in line and not line.startswith("#")]
sys.exit(any(installed.get(key(name)) != version for name, version in pins if key(name) not in sys.argv[2:]))
EOF
then
  quiet "$PY" -m pip install -q -r "$ROOT/environment/requirements.txt"
fi
for package in "${REMOVED[@]}"; do
  if "$PY" -m pip show -q "$package" >/dev/null 2>&1; then
    quiet "$PY" -m pip uninstall -y -q "$package"
  fi
done
# The course library, in place; skipped when this environment already imports it from
# here (pip would uninstall and reinstall it: a moment in which nothing imports llmopt).
if ! (cd / && "$PY" -I -c 'import sys, llmopt; sys.exit(llmopt.__file__ != sys.argv[1])' \
        "$ROOT/llmopt/__init__.py") 2>/dev/null; then
  quiet "$PY" -m pip install -q --no-deps -e "$ROOT"
fi
(cd / && "$PY" -c "import torch, triton, transformers, nbgrader, nbval, jupyterlab, llmopt, course_config")

if [ -n "$VLLM_VENV" ]; then
  new_venv "$VLLM_VENV"
  quiet "$VLLM_VENV/bin/python" -m pip install -q -r "$ROOT/environment/requirements-vllm.txt"
  (cd / && "$VLLM_VENV/bin/python" -c "import vllm, torch; print('vLLM', vllm.__version__, 'on torch', torch.__version__)")
fi
echo "$VENV: ready (environment/requirements.txt, llmopt in place)${VLLM_VENV:+; vLLM in $VLLM_VENV}"
