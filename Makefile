# The course's commands. Every target runs inside .venv, which `setup` builds from the
# pinned requirements; nothing is installed outside it.
SHELL := /bin/bash
PY := .venv/bin/python
VENV_BIN := $(abspath .venv/bin)
export PATH := $(VENV_BIN):$(PATH)
export PYTHONPATH := $(CURDIR)
export PYTHONHASHSEED := 0
# Idle OpenMP threads sleep instead of spinning: tests share 2 cores among many processes.
export OMP_WAIT_POLICY := PASSIVE
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup lock notebooks release solutions course test lab grade clean

# Idempotent: reinstalls only when a requirements file or pyproject.toml changed.
setup: .venv/.installed bwrap hub-deps

# Student code is graded only inside bubblewrap (grader/sandbox/bubblewrap.py). As root,
# install it from the distribution's packages; otherwise say what to ask for.
.PHONY: bwrap
bwrap:
	@command -v bwrap >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q bubblewrap >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; }; \
	  else echo "The grader needs bubblewrap: ask an administrator to install the 'bubblewrap' package"; exit 1; fi; }
	@bwrap --version
# The course hub (environment/hub/, `make hub`) and its browser test: the hub's proxy
# from npm (pinned by package-lock.json, into environment/hub/node_modules), and, as root,
# Debian's Chromium, which Playwright drives (it downloads no browser), with a font for
# the chapters' Chinese. Without root and without Chromium the browser test is skipped,
# and says why.
HUB_PROXY := environment/hub/node_modules/.bin/configurable-http-proxy
.PHONY: hub-deps chromium
hub-deps: $(HUB_PROXY) chromium
$(HUB_PROXY): environment/hub/package.json environment/hub/package-lock.json
	@command -v npm >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q nodejs npm >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q nodejs npm >/dev/null; }; \
	  else echo "The course hub needs node and npm: ask an administrator to install 'nodejs' and 'npm'"; exit 1; fi; }
	npm ci --prefix environment/hub --no-audit --no-fund --loglevel=error
	@touch $@
chromium:
	@{ command -v chromium >/dev/null && fc-list :lang=zh 2>/dev/null | grep -q .; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q chromium fonts-wqy-zenhei >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q chromium fonts-wqy-zenhei >/dev/null; }; \
	  else echo "No Chromium (Debian's 'chromium' package): the hub's browser test will be skipped"; fi; }

# environment/install.sh: the one install, which the images run too (environment/docker/).
.venv/.installed: environment/requirements.txt pyproject.toml environment/install.sh
	environment/install.sh --venv .venv
	@touch $@

# Re-resolve the pins after editing requirements.in.
lock: setup
	$(PY) -m pip install -q -r environment/requirements.in
	$(PY) -m pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > environment/requirements.txt

# Retrain the tokenizer and both course models from this interpreter's standard library,
# offline, and rewrite their model cards (models/train.py); then chapter 8's EAGLE head
# on the new course-lm (models/train_eagle_head.py). Phony: models/ is a folder.
.PHONY: models
models: setup
	$(PY) models/train.py
	$(PY) models/train_eagle_head.py

# ---- the course --------------------------------------------------------------------

# Notebooks from their text twins (source/<chapter>/*.py), then nbgrader's release/.
release: setup
	$(PY) -m grader build

# Executed reference notebooks, hidden tests removed (solutions/<chapter>/), every chapter
# rebuilt: for authors, after editing a chapter or the library whose outputs it shows.
solutions: release
	$(PY) -m grader solutions

# The main job: build everything, then grade the demo class and print its table. Only the
# solutions whose cells no longer match their source are rebuilt (executing them again
# changes every timing in their outputs), so on a fresh clone `git status` stays clean.
course: setup release
	$(PY) -c "from grader.course import solutions; print('solutions rebuilt:', solutions(only_stale=True) or 'none (all match their sources)')"
	$(PY) -m grader demo

# Everything CI checks; COURSE_SMALL=1 shrinks notebook workloads, -n 2 uses both cores.
test: setup
	COURSE_SMALL=1 $(PY) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=600 --durations=15 tests solutions

# Students: JupyterLab on their workspace (workspace/, git-ignored), which gets the
# chapters it lacks from release/ and never loses a notebook to a rebuild; nbgrader's
# instructor-only extensions are off there (grader/lab.py). Options go to jupyter lab,
# e.g. `make lab LAB_OPTIONS=--no-browser`.
lab: setup
	$(PY) -m grader.lab $(LAB_OPTIONS)

# The course's JupyterHub on 127.0.0.1:$(HUB_PORT) (environment/hub/jupyterhub_config.py):
# students get JupyterLab with an Assignments tab on the course's exchange, instructors
# JupyterLab on the course with formgrader. Passwords: LLMOPT_HUB_PASSWORD and
# LLMOPT_HUB_INSTRUCTOR_PASSWORD, else generated into hub/passwords.json. Ctrl-C stops it
# and every user's server.
HUB_PORT ?= 8000
.PHONY: hub
hub: setup
	mkdir -p hub && cd hub && LLMOPT_HUB_PORT=$(HUB_PORT) $(VENV_BIN)/jupyterhub -f $(CURDIR)/environment/hub/jupyterhub_config.py

# Instructors: autograde one chapter of the real course, e.g. `make grade CHAPTER=ch01`.
grade: setup
	$(PY) -m grader autograde $(CHAPTER)
	$(PY) -m grader report

# The serving benchmark on the reference components (tools/bench_serving.py): a 32-request
# chat trace through transformers.generate and the course engine, on 2 torch threads.
# Its last two lines are the batch-1 and the trace speed-up over one-at-a-time generate,
# medians over 3 rounds (about 2 minutes on a quiet machine).
.PHONY: bench
bench: setup
	$(PY) tools/bench_serving.py --threads 2 --rounds 3

# Whoever has a GPU: every GPU-only check, one table (blocked rows without CUDA).
.PHONY: gpu-check
gpu-check: setup
	$(PY) tools/gpu_check.py

clean:
	rm -rf build gradebook.db autograded feedback submitted
