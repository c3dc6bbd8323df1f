"""Fixtures of every test folder: a project folder in a temporary directory, with its own config,
warehouse and Dagster instance. Nothing is written into the checkout."""

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ct_assets.config import Settings, load_settings
from ct_assets_tests.helpers.config import write_config

# Hypothesis keeps its example database under the working directory unless told otherwise: tests
# write nothing into the checkout.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "ct_assets_hypothesis")
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with DAGSTER_HOME inside it, and CT_ASSETS_CONFIG cleared."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CT_ASSETS_CONFIG", raising=False)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return tmp_path


@pytest.fixture
def make_settings(project: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """make_settings(training={...}, gate={...}, ...) -> Settings, also exported via CT_ASSETS_CONFIG so
    that Dagster resources and the CLI read the same file."""
    counter = {"n": 0}

    def make(**tables: dict[str, Any]) -> Settings:
        counter["n"] += 1
        path = write_config(project / f"config_{counter['n']}.toml", tables)
        monkeypatch.setenv("CT_ASSETS_CONFIG", str(path))
        return load_settings(path)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """The default configuration (small retrain threshold), rooted in the temporary project."""
    return make_settings(retrain={"min_new_rows": 1000})


@pytest.fixture
def warehouse(settings: Settings) -> Settings:
    """Settings whose warehouse and folders exist."""
    from ct_assets.store.warehouse import init_warehouse

    init_warehouse(settings)
    return settings


@pytest.fixture
def instance(project: Path) -> Iterator[Any]:
    """A persistent Dagster instance in the temporary DAGSTER_HOME (sensors need a persistent one)."""
    import dagster as dg

    with dg.instance_for_test(temp_dir=os.environ["DAGSTER_HOME"]) as inst:
        yield inst


@pytest.fixture(scope="session")
def cluster_services() -> Iterator[Any]:
    """PostgreSQL and moto's S3 server on loopback, for the whole session (tests marked `cluster`)."""
    from ct_assets_tests.helpers.cluster import running_services

    with running_services() as services:
        yield services
