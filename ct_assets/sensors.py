"""Sensors (RUNNING by default, each with a cursor) and the freshness schedule."""

import hashlib
import json

import dagster as dg

from ct_assets.errors import CtError, WarehouseBusy, WarehouseMissing
from ct_assets.jobs import BATCH_TAG, TRIGGER_TAG, ct_job, freshness_job, golden_job, ingest_job, registry_job
from ct_assets.lib import alerts, landing
from ct_assets.lib.datasets import active_golden
from ct_assets.lib.ingest import utc_now
from ct_assets.lib.triggers import retrain_decision
from ct_assets.lib.warehouse import connect_reader
from ct_assets.resources import SettingsResource

LANDING_INTERVAL_SECONDS = 5
RETRAIN_INTERVAL_SECONDS = 10
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
CT_SELECTION = ["training_dataset", "challenger_model", "validation_report", "champion_model"]


def _cursor(context: dg.SensorEvaluationContext) -> dict:
    try:
        return json.loads(context.cursor) if context.cursor else {}
    except json.JSONDecodeError:
        return {}


def _in_flight(context: dg.SensorEvaluationContext, job_name: str) -> int:
    runs = context.instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=5)
    return len(runs)


@dg.sensor(
    description="New ready files in the landing folder -> one ingest run (never two in flight).",
    job=ingest_job,
    minimum_interval_seconds=LANDING_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def landing_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource):
    """New ready files in the landing folder -> one ingest run (not while one is already in flight)."""
    s = settings.load()
    files = landing.ready_files(s.paths.landing)
    if not files:
        return dg.SkipReason(f"no ready files in {s.paths.landing}")
    signature = hashlib.sha256("\n".join(f"{f.name}|{f.size}|{f.mtime}" for f in files).encode()).hexdigest()[
        :16
    ]
    cursor = _cursor(context)
    if _in_flight(context, ingest_job.name):
        return dg.SkipReason(f"{len(files)} ready file(s) wait for the ingest run in flight")
    attempt = cursor.get("attempt", 0) + 1 if cursor.get("signature") == signature else 1
    context.update_cursor(json.dumps({"signature": signature, "attempt": attempt, "files": len(files)}))
    return dg.RunRequest(
        run_key=f"ingest-{signature}-{attempt}",
        tags={TRIGGER_TAG: "landing", "ct_assets/files": str(len(files))},
    )


@dg.sensor(
    description="Labelled rows newer than the champion's training watermark reach [retrain] min_new_rows "
    "-> one CT run per newest batch; skips the tick while a writer holds the warehouse.",
    job=ct_job,
    minimum_interval_seconds=RETRAIN_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def retrain_sensor(context: dg.SensorEvaluationContext, settings: SettingsResource):
    """Labelled rows newer than the champion's training watermark >= [retrain] min_new_rows -> one CT run.

    Reads DuckDB read-only for milliseconds and skips the tick when a writer holds the file. The run
    key names the newest ingested batch: never two runs for the same data, and a new run once more
    data lands after a blocked challenger.
    """
    try:
        s = settings.load()
        with connect_reader(s) as con:
            decision = retrain_decision(con, s)
            golden_missing = active_golden(con) is None
    except (WarehouseBusy, WarehouseMissing) as e:
        return dg.SkipReason(f"skipped: {e}")
    except CtError as e:
        return dg.SkipReason(f"skipped: {e}")
    cursor = _cursor(context)
    if not decision.should_run:
        return dg.SkipReason(decision.reason)
    if cursor.get("requested_batch") == decision.newest_batch_id:
        return dg.SkipReason(
            f"a CT run was already requested for data up to batch {decision.newest_batch_id}"
        )
    context.update_cursor(
        json.dumps(
            {"requested_batch": decision.newest_batch_id, "rows_since_training": decision.rows_since_training}
        )
    )
    selection = (["golden_dataset"] if golden_missing else []) + CT_SELECTION
    return dg.RunRequest(
        run_key=f"ct-batch-{decision.newest_batch_id}",
        asset_selection=[dg.AssetKey(k) for k in selection],
        tags={
            TRIGGER_TAG: "rows",
            BATCH_TAG: str(decision.newest_batch_id),
            "ct_assets/reason": decision.reason[:200],
        },
    )


def _error_chain(error) -> list:
    chain = []
    while error is not None:
        chain.append(error)
        error = error.cause
    return chain


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    monitored_jobs=[ingest_job, ct_job, registry_job, golden_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A run of the loop failed for a reason other than the gate -> one alert per cause "
    "(warehouse row, log line, webhook when configured). Gate blocks are alerted as blocks by validation_report.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, settings: SettingsResource) -> None:
    """Alerts on failed runs; a run stopped by blocking checks is a block, not a failure, and is skipped."""
    failures = context.get_step_failure_events()
    errors = [e for f in failures if f.step_failure_data for e in _error_chain(f.step_failure_data.error)]
    if any(e.cls_name == "DagsterAssetCheckFailedError" for e in errors):
        return
    run = context.dagster_run
    step = failures[0].step_key if failures else "run"
    first = next(
        (e.message.strip().splitlines()[0] for e in reversed(errors) if e.message.strip()),
        context.failure_event.message or "failed",
    )
    cause = f"failure:{run.job_name}:{step}:{hashlib.sha256(first.encode()).hexdigest()[:10]}"
    alerts.raise_alert(
        settings.load(),
        kind="failure",
        cause=cause,
        now=utc_now(),
        logger=context.log,
        message=f"{run.job_name} run {run.run_id} failed at {step}: {first[:300]}",
        details={"run_id": run.run_id, "job": run.job_name, "step": step},
    )


freshness_schedule = dg.ScheduleDefinition(
    name="freshness_schedule",
    job=freshness_job,
    cron_schedule="*/15 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 15 minutes: are files still landing, and is the champion's data lag within its limit?",
)
