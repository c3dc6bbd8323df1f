# One entry point. `make demo` runs the main job; `make test` runs the tests. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint bench contract clean cluster-setup test-cluster

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

## Cluster mode (docs/scale_out.md) in its own venv: DuckDB 1.5.5 with the DuckLake, postgres and httpfs
## extensions (installed from their wheels into .venv-cluster/duckdb_extensions), dagster-postgres, Dask.
## Editable like .venv, so the tests and the worker processes run this checkout's code; a worker host
## installs `pip install '.[cluster]'` instead. The embedded .venv is not touched.
CLUSTER_VENV ?= .venv-cluster
CBIN := $(CLUSTER_VENV)/bin
CSTAMP := $(CLUSTER_VENV)/.installed

$(CSTAMP): pyproject.toml setup.cfg
	$(PYTHON) -m venv $(CLUSTER_VENV)
	$(CBIN)/pip install --quiet --upgrade pip
	$(CBIN)/pip install --quiet -e '.[dev,cluster]'
	$(CBIN)/python -m ct_assets.store.lake_extensions
	touch $(CSTAMP)

cluster-setup: $(CSTAMP)

## The cluster-mode tests (real PostgreSQL and a real moto S3 server on 127.0.0.1), in .venv-cluster.
test-cluster: $(CSTAMP)
	$(CBIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m cluster ct_assets_tests

clean:
	rm -rf $(VENV) $(CLUSTER_VENV) .pytest_cache .ruff_cache .mypy_cache
