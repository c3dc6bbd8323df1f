"""Sensors (RUNNING by default, each with a cursor) and the freshness schedule."""

import hashlib
import json
import os

import dagster as dg

from ct_assets.common.clock import utc_now
from ct_assets.core import alerts
from ct_assets.core.ingest.pending import landed
from ct_assets.core.triggers.decision import decide
from ct_assets.core.triggers.snapshot import load_trigger_inputs
from ct_assets.defs.constants import BATCH_TAG, CT_SELECTION, SENSOR_INTERVAL_ENV, TRIGGER_TAG
from ct_assets.defs.instance import recover_dead_runs
from ct_assets.defs.jobs import ct_job, freshness_job, golden_job, ingest_job, registry_job
from ct_assets.defs.resources import SettingsResource
from ct_assets.errors import ConfigError, CtError

# Dagster skips a tick when less than the minimum interval has passed since the previous tick *ended*,
# and its sensor loop starts every 5 s: an interval of 5 s made the landing sensor tick every 10 s. At
# 1 s it ticks on every loop, every 5 s (the loop, not this, sets the pace).
LANDING_INTERVAL_SECONDS = 1
RETRAIN_INTERVAL_SECONDS = 10


def interval_seconds(default: int) -> int:
    """A sensor's minimum interval: `default`, or whole seconds from $CT_ASSETS_SENSOR_INTERVAL, read
    when the definitions are built. (Dagster's sensor daemon loops every 5 s, so intervals below that
    only matter with a faster daemon loop.)"""
    raw = os.environ.get(SENSOR_INTERVAL_ENV, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{SENSOR_INTERVAL_ENV} must be a whole number of seconds >= 1, got {raw!r}")
    return int(raw)


IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _cursor(context: dg.SensorEvaluationContext) -> dict:
    try:
        return json.loads(context.cursor) if context.cursor else {}
    except json.JSONDecodeError:
        return {}


def _in_flight(context: dg.SensorEvaluationContext, job_name: str) -> int:
    recover_dead_runs(context.instance)  # a run left STARTED by a killed `ct-assets` is not in flight
    runs = context.instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT), limit=5)
    return len(runs)


def landing_tick(context: dg.SensorEvaluationContext, settings: SettingsResource):
    """New ready files in the landing folder -> one ingest run (not while one is already in flight)."""
    s = settings.load()
    where, files = landed(s)
    if not files:
        return dg.SkipReason(f"no ready files in {where}")
    signature = hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]
    cursor = _cursor(context)
    if _in_flight(context, ingest_job.name):
        return dg.SkipReason(f"{len(files)} ready file(s) wait for the ingest run in flight")
    attempt = cursor.get("attempt", 0) + 1 if cursor.get("signature") == signature else 1
    context.update_cursor(json.dumps({"signature": signature, "attempt": attempt, "files": len(files)}))
    return dg.RunRequest(
        run_key=f"ingest-{signature}-{attempt}",
        tags={TRIGGER_TAG: "landing", "ct_assets/files": str(len(files))},
    )


def retrain_tick(context: dg.SensorEvaluationContext, settings: SettingsResource):
    """A due retrain trigger (rows, decay, drift, staleness; see ct_assets.core.triggers) -> one CT run,
    tagged with the trigger that fired.

    Reads the trigger-input snapshot every writer leaves (valid only while the warehouse files carry
    the stamp it names), else DuckDB read-only for milliseconds, skipping the tick if a writer holds it. The run
    key names the newest ingested batch: never two runs for the same data, and a new run once more
    data lands after a blocked challenger. Never two CT runs in flight: while one is, due triggers
    wait (nothing is lost: the next run trains on everything ingested by then).
    """
    try:
        s = settings.load()
        inputs, _ = load_trigger_inputs(s)
    except CtError as e:  # WarehouseBusy, WarehouseMissing among them
        return dg.SkipReason(f"skipped: {e}")
    decision = decide(inputs, s)
    cursor = _cursor(context)
    if not decision.should_run:
        return dg.SkipReason(decision.reason)
    if _in_flight(context, ct_job.name):
        return dg.SkipReason(
            f"{decision.trigger} trigger due, but a CT run is in flight; the next one will "
            "train on everything ingested by then"
        )
    if cursor.get("requested_batch") == decision.newest_batch_id:
        return dg.SkipReason(
            f"a CT run was already requested for data up to batch {decision.newest_batch_id}"
        )
    context.update_cursor(
        json.dumps(
            {
                "requested_batch": decision.newest_batch_id,
                "rows_since_training": decision.rows_since_training,
                "trigger": decision.trigger,
            }
        )
    )
    selection = CT_SELECTION
    return dg.RunRequest(
        run_key=f"ct-batch-{decision.newest_batch_id}",
        asset_selection=[dg.AssetKey(k) for k in selection],
        tags={
            TRIGGER_TAG: decision.trigger or "rows",
            BATCH_TAG: str(decision.newest_batch_id),
            "dagster/max_runtime": str(int(s.guardrails.max_run_seconds)),
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


def build_sensors(landing_interval: int, retrain_interval: int) -> list[dg.SensorDefinition]:
    """The landing and retrain sensors with these minimum intervals (seconds), both RUNNING by default."""
    landing_sensor = dg.sensor(
        name="landing_sensor",
        description="New ready files in the landing folder -> one ingest run (never two in flight).",
        job=ingest_job,
        minimum_interval_seconds=landing_interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )(landing_tick)
    retrain_sensor = dg.sensor(
        name="retrain_sensor",
        description="A retrain trigger is due (labelled rows since the champion's watermark, decay on fresh labels, "
        "drift, staleness) -> one CT run per newest batch, tagged with the trigger; never two in flight; skips the "
        "tick while a writer holds the warehouse.",
        job=ct_job,
        minimum_interval_seconds=retrain_interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )(retrain_tick)
    return [landing_sensor, retrain_sensor]
