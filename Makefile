# One entry point. `make demo` runs the main job; `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint bench contract clean

$(STAMP): pyproject.toml setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

## The main job: Dagster web UI + daemon on http://127.0.0.1:3000, sensors running, a feeder landing deltas.
demo: $(STAMP)
	$(BIN)/ct-assets demo

## Every test (the soak variants stay behind `-m soak`), on two workers: most end-to-end tests wait on
## subprocesses (daemon, web server, CLI), so two run side by side; a test file stays on one worker.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile

test-fast: $(STAMP)
	$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m 'not slow'

lint: $(STAMP)
	$(BIN)/ruff check ct_assets ct_assets_tests bench
	$(BIN)/ruff format --check ct_assets ct_assets_tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run.py --quick

## The acceptance check of the CLI contract, on a fresh clone of this checkout.
contract: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python ../shared/acceptance/cli_contract.py .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
