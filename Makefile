# The two commands a newcomer needs: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export DVC_NO_ANALYTICS := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: demo daily-demo test lint install

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dvc repro
	$(BIN)/dvc repro tabular/dvc.yaml
	$(BIN)/dvc repro keypoint/dvc.yaml
	$(BIN)/fleet table
	$(BIN)/fleet status

# day 1 full, day 2 fine-tuned and promoted, day 3 PMP-3 drifts and keeps production;
# in a project of its own under build/daily-demo
daily-demo: $(STAMP)
	$(BIN)/python -m pipelines.demo --into build/daily-demo

# the end-to-end tests (a temp git + DVC repo each) are most of the time: one worker per
# core, each taking a whole test module (its fixtures are built once), the longest first
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadscope --no-loadscope-reorder

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
