"""Cluster mode's DuckLake maintenance as a Dagster job, and the nightly schedule that runs it (both in the
definitions only when the config has a [cluster] table: the embedded DuckDB file needs none)."""

import dagster as dg

from ct_assets.defs.resources import SettingsResource
from ct_assets.store import lake_maintenance


@dg.op
def maintain_lake(context: dg.OpExecutionContext, settings: SettingsResource) -> dg.Output[None]:
    """Merge the DuckLake warehouse's small Parquet files, expire snapshots older than 7 days and delete
    the files no snapshot needs after 24 hours, under the writer lock (ct_assets.store.lake_maintenance)."""
    done = lake_maintenance.maintain(settings.load())
    context.log.info(
        f"lake maintenance: {done.files_before} -> {done.files_after} data files, {done.snapshots_expired} "
        f"snapshots expired, {done.files_deleted} files deleted, {done.seconds:.1f} s"
    )
    return dg.Output(
        None,
        metadata={
            "data files before": done.files_before,
            "data files after": done.files_after,
            "snapshots expired": done.snapshots_expired,
            "files deleted": done.files_deleted,
            "seconds": round(done.seconds, 2),
        },
    )


@dg.job(
    description="Maintain the DuckLake warehouse: merge small files, expire old snapshots, delete unneeded files."
)
def lake_maintenance_job() -> None:
    maintain_lake()


lake_maintenance_schedule = dg.ScheduleDefinition(
    name="lake_maintenance_schedule",
    job=lake_maintenance_job,
    cron_schedule="17 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night at 03:17 UTC: DuckLake maintenance (cluster mode only).",
)
