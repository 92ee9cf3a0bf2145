# mlpipe — `make help` lists the targets.
SHELL  := bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
EVIDENTLY := .venv-evidently
# mypy and import-linter read packages from one folder: the source folders assembled as mlpipe/.
LINT_TREE := build/lint

.DEFAULT_GOAL := help
.PHONY: help install demo up down test test-fast bench lint clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install mlpipe with its test extras
	@command -v chromium >/dev/null || echo "No chromium: the Prefect UI test (tests/ui) will be skipped; to run it: sudo apt-get install chromium"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: install ## Run the training pipeline on 100k rows of demo data (no server needed)
	$(BIN)/mlpipe demo

up: install ## Start the local workspace's servers (Prefect, MLflow, Dask, a worker); commands then use them
	$(BIN)/mlpipe up

down: install ## Stop the servers `make up` started (their data stays in .mlpipe/servers)
	$(BIN)/mlpipe down

test: install ## Run the whole test suite (real Prefect, MLflow and Dask on 127.0.0.1)
	$(BIN)/pytest

test-fast: install ## Only the tests of plain functions: no Prefect server, about a minute
	$(BIN)/pytest -m unit

bench: install $(EVIDENTLY)/.installed ## Run the benchmarks in tests/benchmarks (minutes; not part of `make test`)
	$(BIN)/python -m tests.benchmarks.commands
	$(BIN)/python -m tests.benchmarks.training
	$(BIN)/python -m tests.benchmarks.sweep
	$(BIN)/python -m tests.benchmarks.scoring
	$(BIN)/python -m tests.benchmarks.drift
	$(BIN)/python -m tests.benchmarks.serving
	$(BIN)/python -m tests.benchmarks.memory $(if $(BEFORE_PYTHON),--before $(BEFORE_PYTHON))
	$(BIN)/python -m tests.benchmarks.scaling

# Evidently (the drift benchmark's comparison) needs pandas < 3, so it gets an environment of its own.
$(EVIDENTLY)/.installed: tests/benchmarks/evidently-requirements.txt
	$(PYTHON) -m venv $(EVIDENTLY)
	$(EVIDENTLY)/bin/pip install --quiet -r tests/benchmarks/evidently-requirements.txt
	touch $@

lint: install ## ruff (style, imports, no print in library code), format check, mypy, the import-layer contract
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m tests.source_tree $(LINT_TREE)
	set -o pipefail; $(BIN)/mypy $(LINT_TREE)/mlpipe | $(BIN)/python -m tests.source_tree $(LINT_TREE) --messages
	cd $(LINT_TREE) && PYTHONPATH=. $(CURDIR)/$(BIN)/lint-imports --no-cache $(CURDIR)/pyproject.toml

clean: ## Remove the virtual environments, the local workspace and build folders
	if [ -x $(BIN)/mlpipe ]; then $(BIN)/mlpipe down; fi
	rm -rf $(VENV) $(EVIDENTLY) .mlpipe build dist
