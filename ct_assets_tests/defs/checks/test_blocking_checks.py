"""Every asset check with data that should pass and data that should fail, through Dagster runs on a
temporary warehouse and instance."""

import os
import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
import pytest
import tomli_w

from ct_assets.common.clock import utc_now
from ct_assets.config import Settings, load_settings
from ct_assets.core import gate, registry
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.store.warehouse import init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.config import WEAK, small
from ct_assets_tests.helpers.runs import GX_CHECKS, run
from ct_assets_tests.helpers.runs import check_evaluations as evaluations
from ct_assets_tests.helpers.warehouse import champion, ledger

REG_GOLDEN = "challenger_no_regression_golden"
REG_HOLDOUT = "challenger_no_regression_holdout"
SLICE = "challenger_no_slice_regression"
FLOOR = "challenger_above_floor"
SANE = "challenger_predictions_sane"
BLOCKING = [REG_GOLDEN, REG_HOLDOUT, SLICE, FLOOR, SANE]


def records(value: Any) -> list[dict[str, Any]]:
    return [r.data for r in value.records]


def newest_ledger_entry(settings: Settings) -> registry.LedgerEntry:
    return ledger(settings, limit=1)[0]


# ------------------------------------------------------------------------------ raw_deltas (GX checks)


def _first_rows(frame: pl.DataFrame, column: str, value: Any, n: int = 5) -> pl.DataFrame:
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) < n).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    )


def _future_times(frame: pl.DataFrame) -> pl.DataFrame:
    late = pl.col("event_time") + pl.duration(days=2)
    return frame.with_columns(
        pl.when(pl.int_range(pl.len()) < 5).then(late).otherwise(pl.col("event_time")).alias("event_time")
    )


def _duplicate_id(frame: pl.DataFrame) -> pl.DataFrame:
    first = frame["row_id"][0]
    return _first_rows(frame, "row_id", first, n=2)


# (what is wrong, how to break a good delta, the check that must fail, the column it names)
BAD_DELTAS = [
    pytest.param(lambda f: f.drop("plan"), "raw_deltas_schema_valid", "plan", id="missing-column"),
    pytest.param(
        lambda f: _first_rows(f, "monthly_spend", None),
        "raw_deltas_required_not_null",
        "monthly_spend",
        id="null",
    ),
    pytest.param(
        lambda f: _first_rows(f, "discount_rate", 1.5),
        "raw_deltas_values_valid",
        "discount_rate",
        id="out-of-range",
    ),
    pytest.param(
        lambda f: _first_rows(f, "region", "atlantis"),
        "raw_deltas_values_valid",
        "region",
        id="unknown-category",
    ),
    pytest.param(_future_times, "raw_deltas_values_valid", "event_time", id="future-event-time"),
    pytest.param(_duplicate_id, "raw_deltas_row_ids_unique", "row_id", id="duplicate-row-id"),
]


@pytest.mark.parametrize(("breaks", "check", "column"), BAD_DELTAS)
def test_gx_check_fails_for_a_bad_delta_and_only_that_file_is_quarantined(
    warehouse: Settings,
    instance: dg.DagsterInstance,
    breaks: Callable[[pl.DataFrame], pl.DataFrame],
    check: str,
    column: str,
) -> None:
    good, victim = simulate(warehouse, SimulationOptions(batches=2, rows=1000, seed=21))
    bad = warehouse.paths.landing / "bad_delta.parquet"
    breaks(pl.read_parquet(victim)).write_parquet(bad)
    victim.unlink()

    result = run(instance, "ingest_job")
    assert result.success  # a warning: bad files are quarantined, the run goes on

    checks = evaluations(result, "raw_deltas")
    assert {name: checks[name].passed for name in GX_CHECKS} == {name: name != check for name in GX_CHECKS}
    failed = checks[check]
    assert failed.severity == dg.AssetCheckSeverity.WARN
    assert failed.metadata["failed_files"].value == bad.name
    assert failed.metadata["files_failed"].value == 1
    rows = records(failed.metadata["expectations"])
    broken = [r for r in rows if not r["success"]]
    assert broken and all(r["file"] == bad.name for r in broken)
    assert column in {r["column"] for r in broken}
    assert any(r["file"] == good.name and r["success"] for r in rows)

    assert (warehouse.paths.quarantine / bad.name).exists()
    reason = (warehouse.paths.quarantine / f"{bad.name}.reason.txt").read_text()
    assert bad.name in reason and column in reason
    assert (warehouse.paths.archive / good.name).exists()
    assert landing_is_empty(warehouse)


def landing_is_empty(settings: Settings) -> bool:
    return not any(p.suffix in (".parquet", ".csv") for p in settings.paths.landing.iterdir())


def test_gx_checks_pass_for_good_deltas(warehouse: Settings, instance: dg.DagsterInstance) -> None:
    files = simulate(warehouse, SimulationOptions(batches=2, rows=1000, seed=22))
    result = run(instance, "ingest_job")
    assert result.success
    checks = evaluations(result, "raw_deltas")
    assert {name: checks[name].passed for name in GX_CHECKS} == dict.fromkeys(GX_CHECKS, True)
    for name in GX_CHECKS:
        assert checks[name].metadata["files_checked"].value == 2
        assert checks[name].metadata["files_failed"].value == 0
        rows = records(checks[name].metadata["expectations"])
        assert rows and all(r["success"] for r in rows)
        assert {r["file"] for r in rows} == {f.name for f in files}


# ------------------------------------------------------------------------- raw_deltas_newest_file_fresh


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


# --------------------------------------------------------------------- champion_model_data_lag_within_limit


def test_data_lag_fails_when_there_is_no_champion(warehouse: Settings, instance: dg.DagsterInstance) -> None:
    simulate(warehouse, SimulationOptions(batches=1, rows=300, seed=26))
    ingest_landed_files(warehouse)
    lag = evaluations(run(instance, "freshness_job"), "champion_model")[
        "champion_model_data_lag_within_limit"
    ]
    assert not lag.passed
    assert lag.severity == dg.AssetCheckSeverity.WARN
    assert "no champion yet" in (lag.description or "")


@pytest.fixture(scope="module")
def champion_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose champion v0001 was trained (through Dagster) on 3 batches whose newest event is
    10 hours old; tests copy its data folder instead of training a champion each."""
    root = tmp_path_factory.mktemp("champion_template")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        home = root / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        mp.setenv("DAGSTER_HOME", str(home))
        config = root / "config.toml"
        config.write_text(tomli_w.dumps(small()))
        mp.setenv("CT_ASSETS_CONFIG", str(config))
        settings = load_settings(config)
        init_warehouse(settings)
        simulate(
            settings, SimulationOptions(batches=3, rows=3000, seed=11), now=utc_now() - timedelta(hours=10)
        )
        with dg.instance_for_test(temp_dir=str(home)) as inst:
            assert run(inst, "ingest_job").success
            first = run(inst, "ct_job")
            assert first.success
            assert all(e.passed for e in first.get_asset_check_evaluations())
        assert champion(settings) == "v0001"
    return root


@pytest.fixture
def with_champion(champion_template: Path, project: Path) -> Path:
    """The template's warehouse, models and state copied into this test's project (relative paths)."""
    shutil.copytree(champion_template / "data", project / "data")
    return project


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


# --------------------------------------------------------------------------------- training_dataset_fresh


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


# ----------------------------------------------------------------------- validation_report (blocking)

BLOCKED_CASES = [
    pytest.param({"training": WEAK}, [REG_GOLDEN, REG_HOLDOUT, SLICE], id="weaker-challenger"),
    pytest.param(
        {"training": WEAK, "gate": {"slice_tolerance": 1.0}},
        [REG_GOLDEN, REG_HOLDOUT],
        id="overall-regression",
    ),
    pytest.param({"training": WEAK, "gate": {"tolerance": 1.0}}, [SLICE], id="slice-regression-only"),
    # The same data and parameters retrain the champion byte for byte: only the floor can fail.
    pytest.param({"gate": {"metric_floor": 0.99}}, [FLOOR], id="below-floor"),
    # No leaf can hold that many rows: trees without splits, one constant prediction.
    pytest.param({"training": {"min_data_in_leaf": 1_000_000}}, BLOCKING, id="constant-predictions"),
]


@pytest.mark.usefixtures("with_champion")
@pytest.mark.parametrize(("tables", "expected_failed"), BLOCKED_CASES)
def test_blocking_checks_fail_and_stop_promotion(
    make_settings: Callable[..., Settings],
    instance: dg.DagsterInstance,
    tables: dict[str, dict[str, Any]],
    expected_failed: list[str],
) -> None:
    settings = make_settings(**small(**tables))
    result = run(instance, "ct_job")
    assert not result.success

    checks = evaluations(result, "validation_report")
    assert {n: checks[n].passed for n in BLOCKING} == {n: n not in expected_failed for n in BLOCKING}
    assert all(checks[n].severity == dg.AssetCheckSeverity.ERROR for n in BLOCKING)
    assert all(checks[n].metadata["champion_version"].value == "v0001" for n in BLOCKING)
    assert all(checks[n].metadata["challenger_version"].value == "v0002" for n in BLOCKING)

    failures = result.get_step_failure_events()
    assert [f.step_key for f in failures] == ["validation_report"]
    error = failures[0].step_failure_data.error
    assert error is not None and error.cls_name == "DagsterAssetCheckFailedError"
    assert "champion_model" not in {
        m.asset_key.to_user_string() for m in result.get_asset_materialization_events()
    }

    assert champion(settings) == "v0001"
    entry = newest_ledger_entry(settings)
    assert (entry.action, entry.version, entry.champion_after) == ("blocked", "v0002", "v0001")
    assert entry.reason == "failed " + ", ".join(expected_failed)

    if FLOOR in expected_failed:
        assert "below the floor" in (checks[FLOOR].description or "")
    if SANE in expected_failed:
        assert "constant model" in (checks[SANE].description or "")


@pytest.mark.usefixtures("with_champion")
def test_blocking_checks_pass_for_a_better_challenger(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    # Make a weak model the champion first (blocked, then approved by a person) ...
    settings = make_settings(**small(training=WEAK))
    assert not run(instance, "ct_job").success
    approve = {"action": "approve", "version": "v0002", "reason": "set up a weak champion"}
    assert run(instance, "registry_job", op_config=approve).success
    assert champion(settings) == "v0002"

    # ... then a properly trained challenger must clear every blocking check and be promoted.
    settings = make_settings(**small())
    result = run(instance, "ct_job")
    assert result.success
    checks = evaluations(result, "validation_report")
    assert {n: checks[n].passed for n in BLOCKING} == dict.fromkeys(BLOCKING, True)
    for name in (REG_GOLDEN, REG_HOLDOUT):
        (overall,) = records(checks[name].metadata["details"])
        assert overall["status"] == "ok"
        assert overall["delta"] > 0.01  # compared with the champion, and clearly better
    gated = [r for r in records(checks[SLICE].metadata["details"]) if r["status"] in ("ok", "underpowered")]
    assert gated, "slices were compared"
    assert champion(settings) == "v0003"
    entry = newest_ledger_entry(settings)
    assert (entry.action, entry.version, entry.champion_before) == ("promoted", "v0003", "v0002")


def _eval_set(predictions: np.ndarray) -> gate.EvalSet:
    rng = np.random.default_rng(0)
    y = (rng.random(len(predictions)) < 0.3).astype(np.int8)
    return gate.EvalSet(name="golden", y=y, slices={}, challenger=predictions, champion=None)


# A LightGBM binary model always predicts finite probabilities in (0, 1), so the asset path can only
# produce the constant case (above); non-finite and out-of-range scores are tested on the gate itself,
# which is the code the validation_report check reports.
@pytest.mark.parametrize(
    ("predictions", "problem"),
    [
        pytest.param(np.linspace(0.01, 0.99, 500), None, id="sane"),
        pytest.param(np.full(500, 0.3), "constant model", id="constant"),
        pytest.param(np.r_[np.linspace(0.01, 0.99, 499), np.nan], "non-finite", id="nan"),
        pytest.param(np.r_[np.linspace(0.01, 0.99, 499), np.inf], "non-finite", id="inf"),
        pytest.param(np.linspace(-0.5, 1.5, 500), "outside [0, 1]", id="out-of-range"),
    ],
)
def test_predictions_sane_check_on_the_gate(
    settings: Settings, predictions: np.ndarray, problem: str | None
) -> None:
    outcome = gate.evaluate(settings, [_eval_set(predictions)]).checks[SANE]
    assert outcome.passed is (problem is None)
    if problem:
        assert problem in outcome.summary
