"""The starting states of the crash tests, built once for this folder in this process: a promoted champion
(v0001) with two more files waiting in the landing folder; the same with those files ingested and a
retrain due; and the same after that retrain (champion v0002). Every case works on its own copy of one of
them, and only the commands under test run as subprocesses. The gate is made lenient so that every CT
run reaches promotion."""

import shutil
from pathlib import Path

import pytest

from ct_assets.config import load_settings
from ct_assets.store.warehouse import init_warehouse
from ct_assets_tests.helpers.config import small, write_config
from ct_assets_tests.robustness.crashes.harness import (
    BASE_FILES,
    BASE_ROWS,
    INGEST_ONLY,
    LOCK_TIMEOUT,
    NEW_FILES,
    NEW_ROWS,
    Bases,
    Project,
    copy_of,
    cycle_in_process,
    inside,
    land,
    live_runs,
)


@pytest.fixture(scope="package")
def bases(tmp_path_factory: pytest.TempPathFactory) -> Bases:
    """Built once, in this process (the steps under test run as killed subprocesses on copies)."""
    root = tmp_path_factory.mktemp("crash")
    p = Project(root / "waiting")
    p.root.mkdir()
    tables = small(
        ingest={"lock_timeout_seconds": LOCK_TIMEOUT},
        retrain={"cooldown_minutes": 0},
        # A lenient gate: every challenger here passes, so every run reaches the promotion step.
        gate={"tolerance": 0.5, "slice_tolerance": 0.5, "metric_floor": 0.5, "bootstrap_resamples": 50},
    )
    write_config(p.config, tables)
    no_retrain = {"min_new_rows": 10**9, "decay_margin": 1.0, "max_champion_age_hours": 0}
    write_config(p.root / INGEST_ONLY, {**tables, "retrain": {**tables["retrain"], **no_retrain}})
    with inside(p):
        init_warehouse(load_settings(p.config))
    old = land(p, BASE_FILES, BASE_ROWS, seed=1)
    out = cycle_in_process(p)
    assert out["verdict"] == "promoted" and out["champion_version"] == "v0001", out
    new = land(p, NEW_FILES, NEW_ROWS, seed=2)
    landed = {h: BASE_ROWS for h in old.values()} | {h: NEW_ROWS for h in new.values()}
    assert len(landed) == BASE_FILES + NEW_FILES
    assert not live_runs(p)

    ingested = Project(root / "ingested")
    shutil.copytree(p.root, ingested.root, symlinks=True)
    out = cycle_in_process(ingested, ingested.root / INGEST_ONLY)
    assert out["ingested_files"] == NEW_FILES and out["verdict"] == "not_triggered", out
    return Bases(p.root, ingested.root, landed, set(old.values()), sorted(path.name for path in new))


@pytest.fixture(scope="package")
def promoted(bases: Bases, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ingested base after its retrain: champion v0002, v0001 before it."""
    p = copy_of(bases.ingested, tmp_path_factory.mktemp("crash_promoted"))
    out = cycle_in_process(p)
    assert out["verdict"] == "promoted" and out["champion_version"] == "v0002", out
    return p.root
