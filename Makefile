# make demo   install, then train the small Game of Life model and write its rollout video
# make test   install, then run the fast tests (make test-all adds the slow ones)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Written after a successful install; pyproject.toml changing (or .venv vanishing) triggers a new one.
STAMP := $(VENV)/.interfere-installed
# The CPU build: this exact pin is the wheel on this machine's disk; an unpinned torch pulls GBs of CUDA wheels.
TORCH ?= torch==2.13.0

.PHONY: install demo test test-all bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -e '.[test]'
	touch $@

demo: install
	$(BIN)/interfere train exp=life_smoke
	@echo "run:   $$(readlink -f runs/latest)"
	@echo "video: $$(ls $$(readlink -f runs/latest)/assets/rollouts/*.mp4 | tail -n 1)"

test: install
	$(BIN)/pytest

test-all: install
	$(BIN)/pytest -m 'slow or not slow'

bench: install
	@set -e; for f in $(sort $(wildcard benchmarks/*.py)); do echo "== $$f"; $(BIN)/python $$f; done

# Caches and build leftovers only: runs/ (your trained models) and .venv stay.
clean:
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	rm -rf .pytest_cache src/*.egg-info build dist benchmarks/results
