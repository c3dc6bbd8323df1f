"""The Great Expectations checks of raw_deltas: each fails (a warning) for its kind of bad delta, naming the
file and column, while only that file is quarantined; all pass for good deltas."""

from collections.abc import Callable
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.runs import GX_CHECKS, records, run
from ct_assets_tests.helpers.runs import check_evaluations as evaluations


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
