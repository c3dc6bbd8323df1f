"""Ingestion: landed files into `raw_deltas`, with Great Expectations checks and freshness checks."""

from collections.abc import Iterator
from datetime import datetime

import dagster as dg

from ct_assets.core.ingest.ingest import IngestReport
from ct_assets.core.ingest.objects import ingest_landed
from ct_assets.core.ingest.quality import CHECKS
from ct_assets.defs.budget import tag_run_worker
from ct_assets.defs.checks.quality import gx_check_results
from ct_assets.defs.constants import INGESTION
from ct_assets.defs.metadata import table
from ct_assets.defs.resources import SettingsResource
from ct_assets.store.sql import fetch_one
from ct_assets.store.warehouse import connect_reader


@dg.asset(
    group_name=INGESTION,
    kinds={"duckdb", "polars"},
    # Its FreshnessPolicy comes from [freshness] max_file_age_hours when the definitions are built
    # (defs/policies.py), so the UI and the checks judge by the same limit.
    check_specs=[dg.AssetCheckSpec(name, asset="raw_deltas", description=d) for name, d in CHECKS.items()],
)
def raw_deltas(context: dg.AssetExecutionContext, settings: SettingsResource) -> Iterator:
    """Landed Parquet/CSV deltas appended to DuckDB, one batch per file, idempotent by file content hash.

    Each file is validated by a Great Expectations suite before the append; a failing file is moved
    to the quarantine folder whole, with a reason file beside it, while the other files go in.
    """
    tag_run_worker(context)
    s = settings.load()
    report = ingest_landed(s, run_id=context.run_id)
    with connect_reader(s, wait_seconds=30) as con:
        total, batches, newest = fetch_one(
            con,
            "SELECT (SELECT count(*) FROM raw_deltas), coalesce(max(batch_id), 0), "
            "max(max_event_time) FROM ingest_log WHERE status = 'ingested'",
        ) or (0, 0, None)
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
            "labels_attached": report.labels_attached,
            "newest_batch_id": int(batches),
            "newest_event_time": str(newest) if newest else "none",
            "files": table(_file_rows(report)),
        },
    )
    yield from gx_check_results(report)


def _file_rows(report: IngestReport) -> list[dict]:
    """One row per handled file: what it became, its rows and the labels it brought (late labels: how
    many attached, pending, conflicting, and their median delay from the rows' event times)."""
    return [
        {
            "file": f.name,
            "kind": f.kind,
            "status": f.status,
            "batch_id": f.batch_id,
            "rows": f.rows,
            "rows_labelled": f.rows_labelled,
            "rows_duplicate_dropped": f.rows_duplicate,
            "labels_attached": f.labels.attached,
            "labels_pending": f.labels.pending,
            "labels_conflict": f.labels.conflict,
            "label_delay_median_hours": f.labels.delay_hours,
            "reason": f.reason,
            "stored_as": f.stored_as,
            "validated_at": _iso(f.validated_at),
            "committed_at": _iso(f.committed_at),
        }
        for f in report.files
    ]


def _iso(t: datetime | None) -> str | None:
    """A wall-clock time (UTC) to the millisecond, as the file table shows it."""
    return t.isoformat(timespec="milliseconds") + "Z" if t else None
