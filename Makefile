# brainfm: set-up from nothing, then the demo or the tests.
#   make demo   install into .venv, then run the whole pipeline on the bundled sample (brainfm demo)
#   make test   install into .venv, then run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.brainfm-installed
# torch is pinned to the CPU build that lies on this project's machines; pyproject allows a range.
TORCH ?= torch==2.13.0
SOURCES := pyproject.toml $(shell find brainfm preprocessing pretrain downstream configs -type f \( -name '*.py' -o -name '*.yaml' \) 2>/dev/null)

.PHONY: install dev demo test test-fast lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(TORCH)"

# A regular (non-editable) install, as CI uses; re-run whenever a source file changes.
$(STAMP): $(BIN)/python $(SOURCES)
	$(BIN)/python -m pip install -q ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Editable install for development (new modules visible without reinstalling).
dev: $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[dev]"

demo: $(STAMP)
	$(BIN)/brainfm demo

test: $(STAMP)
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow and not bench"

lint:
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/preprocess_vs_mne.py

clean:
	rm -rf $(VENV) build *.egg-info demo_out
