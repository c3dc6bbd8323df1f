"""Ingestion: landed files into `raw_deltas`, with Great Expectations checks and freshness checks."""

from collections.abc import Iterator
from datetime import datetime, timedelta

import dagster as dg

from ct_assets.assets import INGESTION
from ct_assets.assets.budget import tag_run_worker
from ct_assets.assets.metadata import table
from ct_assets.lib import alerts, landing
from ct_assets.lib.ingest import IngestReport, ingest_landed_files, utc_now
from ct_assets.lib.quality import CHECKS
from ct_assets.lib.triggers import freshness
from ct_assets.lib.warehouse import connect_reader, fetch_one
from ct_assets.resources import SettingsResource

CHECK_COLUMNS = ["file", "expectation", "column", "success", "observed", "unexpected_count", "element_count"]


def gx_check_results(report: IngestReport) -> Iterator[dg.AssetCheckResult]:
    """The one adapter from Great Expectations outcomes to Dagster check results: one result per
    check spec, covering every file of this run, with a table of what each expectation saw."""
    validated = [f for f in report.files if f.outcomes]
    unreadable = [f for f in report.files if f.status == "quarantined" and not f.outcomes]
    for check, description in CHECKS.items():
        rows = []
        failed_files = set()
        for f in validated:
            for o in f.outcomes:
                if o.check != check:
                    continue
                rows.append(
                    {
                        "file": f.name,
                        "expectation": o.expectation,
                        "column": o.column,
                        "success": o.success,
                        "observed": o.observed,
                        "unexpected_count": o.unexpected_count,
                        "element_count": o.element_count,
                    }
                )
                if not o.success:
                    failed_files.add(f.name)
        if check == "raw_deltas_schema_valid":
            for f in unreadable:
                rows.append(
                    {
                        "file": f.name,
                        "expectation": "file is readable",
                        "column": "",
                        "success": False,
                        "observed": f.reason.split(": ", 1)[-1],
                        "unexpected_count": None,
                        "element_count": None,
                    }
                )
                failed_files.add(f.name)
        rows.sort(key=lambda r: (r["success"], r["file"]))  # failures first
        yield dg.AssetCheckResult(
            check_name=check,
            passed=not failed_files,
            severity=dg.AssetCheckSeverity.WARN,
            description=description,
            metadata={
                "files_checked": len(validated)
                + (len(unreadable) if check == "raw_deltas_schema_valid" else 0),
                "files_failed": len(failed_files),
                "failed_files": ", ".join(sorted(failed_files)) or "none",
                "expectations": table(rows, CHECK_COLUMNS),
            },
        )


@dg.asset(
    group_name=INGESTION,
    kinds={"duckdb", "polars"},
    code_version="1",
    # Shown in the UI; the same window as the default [freshness] max_file_age_hours (the configured
    # limits drive the checks and alerts, which read the config at run time).
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=24), warn_window=timedelta(hours=6)
    ),
    check_specs=[dg.AssetCheckSpec(name, asset="raw_deltas", description=d) for name, d in CHECKS.items()],
)
def raw_deltas(context: dg.AssetExecutionContext, settings: SettingsResource) -> Iterator:
    """Landed Parquet/CSV deltas appended to DuckDB, one batch per file, idempotent by file content hash.

    Each file is validated by a Great Expectations suite before the append; a failing file is moved
    to the quarantine folder whole, with a reason file beside it, while the other files go in.
    """
    tag_run_worker(context)
    s = settings.load()
    report = ingest_landed_files(s, run_id=context.run_id)
    with connect_reader(s, wait_seconds=30) as con:
        total, batches, newest = fetch_one(
            con,
            "SELECT (SELECT count(*) FROM raw_deltas), coalesce(max(batch_id), 0), "
            "max(max_event_time) FROM ingest_log WHERE status = 'ingested'",
        ) or (0, 0, None)
    files = [
        {
            "file": f.name,
            "status": f.status,
            "batch_id": f.batch_id,
            "rows": f.rows,
            "rows_labelled": f.rows_labelled,
            "rows_duplicate_dropped": f.rows_duplicate,
            "reason": f.reason,
            "stored_as": f.stored_as,
        }
        for f in report.files
    ]
    for f in report.with_status("quarantined"):
        context.log.warning(f"quarantined {f.reason}")
    yield dg.Output(
        {"newest_batch_id": int(batches), "rows_total": int(total)},
        data_version=dg.DataVersion(f"batch-{int(batches)}"),
        metadata={
            "dagster/row_count": int(total),
            "files_ingested": len(report.with_status("ingested")),
            "files_quarantined": len(report.with_status("quarantined")),
            "files_duplicate": len(report.with_status("duplicate")),
            "rows_appended": report.rows_appended,
            "newest_batch_id": int(batches),
            "newest_event_time": str(newest) if newest else "none",
            "files": table(files),
        },
    )
    yield from gx_check_results(report)


def _hours(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} h"


@dg.asset_check(asset=raw_deltas, name="raw_deltas_newest_file_fresh", blocking=False)
def raw_deltas_newest_file_fresh(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource
) -> dg.AssetCheckResult:
    """The newest landed file is younger than [freshness] max_file_age_hours (a warning: staleness is a signal)."""
    s = settings.load()
    now = utc_now()
    pending = [f.landed_at for f in landing.ready_files(s.paths.landing)]
    with connect_reader(s, wait_seconds=30) as con:
        fr = freshness(con, s, now, pending)
        open_before = alerts.has_open(con, "freshness:file_age")
    limit = s.freshness.max_file_age_hours
    passed = fr.file_age_hours is not None and fr.file_age_hours <= limit
    _alert_on_breach(
        context,
        s,
        "freshness:file_age",
        passed,
        now,
        f"no new file for {_hours(fr.file_age_hours)} (limit {limit} h) in {s.paths.landing}",
        open_before,
    )
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"newest file landed {_hours(fr.file_age_hours)} ago; limit {limit} h",
        metadata={
            "newest_file_landed_at": _iso(fr.newest_file_landed_at),
            "file_age_hours": fr.file_age_hours if fr.file_age_hours is not None else -1.0,
            "limit_hours": limit,
        },
    )


# additional_deps: in the ingest job it must run after raw_deltas, on the rows that run appended.
@dg.asset_check(
    asset="champion_model",
    name="champion_model_data_lag_within_limit",
    blocking=False,
    additional_deps=[raw_deltas],
)
def champion_model_data_lag_within_limit(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource
) -> dg.AssetCheckResult:
    """Newest ingested event time minus the newest event time the champion trained on stays within
    [freshness] max_data_lag_hours (a warning: a stale champion is a signal, not a gate)."""
    s = settings.load()
    now = utc_now()
    with connect_reader(s, wait_seconds=30) as con:
        fr = freshness(con, s, now)
        open_before = alerts.has_open(con, "freshness:data_lag")
    limit = s.freshness.max_data_lag_hours
    if fr.champion_event_time is None:
        passed, text = False, "no champion yet: every ingested row is unserved by a model"
    else:
        passed = fr.data_lag_hours is not None and fr.data_lag_hours <= limit
        text = (
            f"champion trained on data up to {_iso(fr.champion_event_time)}; lag {_hours(fr.data_lag_hours)}"
        )
        _alert_on_breach(
            context, s, "freshness:data_lag", passed, now, f"{text} (limit {limit} h)", open_before
        )
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{text}; limit {limit} h",
        metadata={
            "newest_ingested_event_time": _iso(fr.newest_event_time),
            "champion_newest_event_time": _iso(fr.champion_event_time),
            "data_lag_hours": fr.data_lag_hours if fr.data_lag_hours is not None else -1.0,
            "limit_hours": limit,
        },
    )


def _alert_on_breach(
    context, s, cause: str, passed: bool, now: datetime, message: str, open_before: bool
) -> None:
    """A breach raises one alert per cause until the check passes again, which closes it (a pass with
    no alert open, as `open_before` read, writes nothing)."""
    if passed:
        if open_before:
            alerts.close_alerts(s, cause, now)
    else:
        alerts.raise_alert(s, kind="freshness", cause=cause, message=message, now=now, logger=context.log)


def _iso(value: datetime | None) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value else "none"
