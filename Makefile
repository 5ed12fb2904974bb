# The README's two commands: `make run` (set up, seed demo sales, run the daily sales report on the embedded
# stack) and `make test` (set up, then the whole test suite against real services started by the tests).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKFLOW ?= sales-report-workflow

.PHONY: setup run test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

run: setup
	$(BIN)/wfp seed sales
	$(BIN)/wfp run $(WORKFLOW)

test: setup lint
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .wfp .pytest_cache .ruff_cache
