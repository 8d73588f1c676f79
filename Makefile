# The course's commands. `make help` lists them. Every target that needs Python creates the
# virtual environment on first use; a second call does not reinstall.

PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
# Tests and CI take the data from ../shared/data when it is there (no network needed).
ifneq ($(wildcard ../shared/data/tinyshakespeare.txt),)
export NANOGPT_DATA_DIR ?= $(abspath ../shared/data)
endif

# Knobs: make train PRESET=gpt-cpu-fast RESUME=1 DIAG=1 ARGS="--max-iters 500"; make check LECTURE=01
# (RESUME and DIAG: 1 turns them on; 0 or leaving them out, off). sample and attribute read the
# checkpoint of PRESET's run folder, runs/<PRESET>/best.pt, when PRESET is given.
PRESET ?=
ARGS   ?=
LECTURE ?=
on = $(filter-out 0 no false,$(1))
train_flags = $(if $(PRESET),--preset $(PRESET)) $(if $(call on,$(RESUME)),--resume) \
              $(if $(call on,$(DIAG)),--diag) $(ARGS)
run_flags = $(if $(PRESET),--ckpt runs/$(PRESET)/best.pt) $(ARGS)

.DEFAULT_GOAL := help
.PHONY: help doctor train sample attribute test lint data notebooks exercises check lab bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

doctor: $(VENV)/.installed  ## check this machine for the course: one line per item, ok or FAIL and its fix
	$(PY) -m nanogpt doctor

train: $(VENV)/.installed  ## train a model (default preset: gpt-cpu, or gpt-gpu on CUDA)
	$(PY) -m nanogpt train $(train_flags)

sample: $(VENV)/.installed  ## generate text from runs/<PRESET>/best.pt (default preset: gpt-cpu)
	$(PY) -m nanogpt sample $(run_flags)

attribute: $(VENV)/.installed  ## generate, then attribute each character to its context (IG)
	$(PY) -m nanogpt attribute $(run_flags)

test: $(VENV)/.dev-installed  ## run the whole test suite (notebooks in smoke mode)
	$(PY) -m nanogpt test $(ARGS)

lint: $(VENV)/.dev-installed  ## ruff over the package, tests and benchmarks
	$(VENV)/bin/ruff check nanogpt tests bench

data: $(VENV)/.installed  ## fetch and verify Tiny Shakespeare and names.txt
	$(PY) -m nanogpt data

notebooks: $(VENV)/.dev-installed  ## run lectures/solutions/ in full mode, save outputs, regenerate lectures/
	$(PY) -m nanogpt notebooks $(ARGS)

exercises: $(VENV)/.dev-installed  ## regenerate the learner's lectures/ (stubs) from lectures/solutions/
	$(PY) -m nanogpt exercises $(ARGS)

# check's status 1 (some exercises not yet done) is not an error of make's: its last line says so.
check: $(VENV)/.dev-installed  ## run your lectures/ and say which exercises pass (LECTURE=01, ARGS=--smoke)
	@$(PY) -m nanogpt check $(LECTURE) $(ARGS); status=$$?; [ $$status -eq 1 ] || exit $$status

# Jupyter refuses to start as root without --allow-root (a container, a VM): added only then.
lab: $(VENV)/.dev-installed  ## open Jupyter Lab on lectures/ (your copies, with the exercise stubs)
	$(PY) -m pip install -q jupyterlab
	$(PY) -m nanogpt lab

bench: $(VENV)/.installed  ## run every benchmark in bench/ (ARGS=--quick: a smoke check)
	@for f in bench/bench_*.py; do echo "== $$f"; $(PY) $$f $(ARGS) || exit 1; done

clean:  ## remove the virtual environment, caches and runs (downloaded data is kept)
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
