"""The freshness checks: raw_deltas_newest_file_fresh, champion_model_data_lag_within_limit (also as the
ingest run evaluates it) and training_dataset_fresh, each passing and failing."""

import os
import time
from collections.abc import Callable
from datetime import timedelta

import dagster as dg
import pytest

from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.store.warehouse import init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.runs import check_evaluations as evaluations
from ct_assets_tests.helpers.runs import run


def test_newest_file_fresh_passes_for_a_recent_file(
    warehouse: Settings, instance: dg.DagsterInstance
) -> None:
    simulate(warehouse, SimulationOptions(batches=1, rows=300, seed=23))
    result = run(instance, "freshness_job")  # the file is still pending: its mtime counts
    fresh = evaluations(result, "raw_deltas")["raw_deltas_newest_file_fresh"]
    assert fresh.passed
    assert 0 <= fresh.metadata["file_age_hours"].value < 0.5
    assert fresh.metadata["limit_hours"].value == 24


def test_newest_file_fresh_fails_for_old_files(warehouse: Settings, instance: dg.DagsterInstance) -> None:
    old = time.time() - 72 * 3600
    for f in simulate(warehouse, SimulationOptions(batches=2, rows=300, seed=24)):
        os.utime(f, (old, old))
    result = run(instance, "ingest_job")  # the files are ingested: their landing times are in the log
    assert result.success
    fresh = evaluations(result, "raw_deltas")["raw_deltas_newest_file_fresh"]
    assert not fresh.passed
    assert fresh.severity == dg.AssetCheckSeverity.WARN
    assert 71.5 < fresh.metadata["file_age_hours"].value < 73


def test_newest_file_fresh_fails_with_a_tiny_limit(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    settings = make_settings(freshness={"max_file_age_hours": 0.0})
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=1, rows=300, seed=25))
    time.sleep(0.05)  # the file's age must be measurably above zero
    fresh = evaluations(run(instance, "freshness_job"), "raw_deltas")["raw_deltas_newest_file_fresh"]
    assert not fresh.passed
    assert fresh.metadata["limit_hours"].value == 0.0


def test_freshness_checks_fail_when_nothing_has_landed(
    warehouse: Settings, instance: dg.DagsterInstance
) -> None:
    result = run(instance, "freshness_job")
    assert result.success
    fresh = evaluations(result, "raw_deltas")["raw_deltas_newest_file_fresh"]
    assert not fresh.passed
    assert fresh.metadata["file_age_hours"].value == -1.0
    lag = evaluations(result, "champion_model")["champion_model_data_lag_within_limit"]
    assert not lag.passed


def test_data_lag_fails_when_there_is_no_champion(warehouse: Settings, instance: dg.DagsterInstance) -> None:
    simulate(warehouse, SimulationOptions(batches=1, rows=300, seed=26))
    ingest_landed_files(warehouse)
    lag = evaluations(run(instance, "freshness_job"), "champion_model")[
        "champion_model_data_lag_within_limit"
    ]
    assert not lag.passed
    assert lag.severity == dg.AssetCheckSeverity.WARN
    assert "no champion yet" in (lag.description or "")


@pytest.mark.usefixtures("with_champion")
def test_data_lag_passes_within_the_limit_and_fails_beyond_it(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    settings = make_settings(**small())
    # The stream continues an hour per batch after the champion's newest row: about 2 h of lag.
    simulate(settings, SimulationOptions(batches=2, rows=1000, seed=11))
    ingest_landed_files(settings)
    within = evaluations(run(instance, "freshness_job"), "champion_model")[
        "champion_model_data_lag_within_limit"
    ]
    assert within.passed
    lag_hours = within.metadata["data_lag_hours"].value
    assert 1.5 < lag_hours < 2.5
    # Ingested outside an ingest run, nothing was scored: the lag falls back to the newest ingested row.
    assert within.metadata["lag_measured_on"].value == "ingested rows"
    assert within.metadata["newest_scored_event_time"].value == "none"
    assert within.metadata["limit_hours"].value == 48

    make_settings(**small(freshness={"max_data_lag_hours": 1.0}))
    beyond = evaluations(run(instance, "freshness_job"), "champion_model")[
        "champion_model_data_lag_within_limit"
    ]
    assert not beyond.passed
    assert beyond.severity == dg.AssetCheckSeverity.WARN
    assert beyond.metadata["data_lag_hours"].value == pytest.approx(lag_hours)
    assert beyond.metadata["limit_hours"].value == 1.0


@pytest.mark.usefixtures("with_champion")
def test_data_lag_in_the_ingest_run_counts_the_rows_that_run_ingested(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    """ingest_job runs this check "with its checks": its verdict must describe the warehouse after the
    ingest, not before it (else a lag pushed over the limit by this run is reported as within it)."""
    settings = make_settings(**small(freshness={"max_data_lag_hours": 1.0}))
    simulate(settings, SimulationOptions(batches=2, rows=1000, seed=11))
    result = run(instance, "ingest_job")
    assert result.success
    lag = evaluations(result, "champion_model")["champion_model_data_lag_within_limit"]
    assert 1.5 < lag.metadata["data_lag_hours"].value < 2.5
    assert not lag.passed
    # Measured after the run's predictions, on the newest row the champion scored.
    assert lag.metadata["lag_measured_on"].value == "scored rows"
    assert lag.metadata["newest_scored_event_time"].value == lag.metadata["newest_ingested_event_time"].value


@pytest.mark.parametrize(("hours_old", "passes"), [(0, True), (72, False)])
def test_training_dataset_fresh(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, hours_old: int, passes: bool
) -> None:
    settings = make_settings(**small())
    init_warehouse(settings)
    simulate(
        settings, SimulationOptions(batches=2, rows=1000, seed=27), now=utc_now() - timedelta(hours=hours_old)
    )
    ingest_landed_files(settings)
    result = run(instance, "ct_job", selection=["golden_dataset", "training_dataset"])
    assert result.success  # a warning, never a gate
    fresh = evaluations(result, "training_dataset")["training_dataset_fresh"]
    assert fresh.passed is passes
    assert fresh.severity == dg.AssetCheckSeverity.WARN
    assert fresh.metadata["age_hours"].value == pytest.approx(hours_old, abs=0.5)
    assert fresh.metadata["limit_hours"].value == 48
