"""The project's jobs run in-process on a test instance, its sensors ticked as the daemon would, and
what a run recorded (materializations, check evaluations, failed steps)."""

import functools
from typing import Any

import dagster as dg

from ct_assets.definitions import defs
from ct_assets.defs.resources import SettingsResource

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
GX_CHECKS = [
    "raw_deltas_schema_valid",
    "raw_deltas_required_not_null",
    "raw_deltas_values_valid",
    "raw_deltas_row_ids_unique",
]
BLOCKING_CHECKS = [
    "challenger_no_regression_golden",
    "challenger_no_regression_holdout",
    "challenger_no_slice_regression",
    "challenger_above_floor",
    "challenger_predictions_sane",
]
CT_STEPS = ["training_dataset", "challenger_model", "validation_report", "champion_model"]


def run(
    instance: dg.DagsterInstance,
    job: str,
    *,
    selection: list[str] | None = None,
    op_config: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """Execute one of the project's jobs in-process on `instance`, quietly, without raising."""
    run_config: dict[str, Any] = dict(QUIET)
    if op_config is not None:
        run_config["ops"] = {"champion_model": {"config": op_config}}
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config=run_config,
        asset_selection=[dg.AssetKey(k) for k in selection] if selection else None,
    )


@functools.cache
def sensor_def(name: str) -> dg.SensorDefinition:
    """The project's sensor called `name` (looked up once per process)."""
    return defs.get_sensor_def(name)


def tick(
    sensor: str | dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None = None
) -> tuple[Any, str | None]:
    """Evaluate a sensor of the project once, as the daemon would; its result and the cursor it leaves."""
    definition = sensor_def(sensor) if isinstance(sensor, str) else sensor
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"settings": SettingsResource()}
    )
    result = definition(context)
    return result, context.cursor


def materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    """The asset keys the run materialized."""
    return {m.asset_key.to_user_string() for m in result.get_asset_materialization_events() if m.asset_key}


def metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    """The metadata of the asset's one materialization in the run, as plain values."""
    (mat,) = result.asset_materializations_for_node(asset)
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def check_evaluations(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    """The run's check evaluations on `asset`, by check name."""
    return {
        e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key == dg.AssetKey(asset)
    }


def check(result: dg.ExecuteInProcessResult, name: str) -> Any:
    """The run's one evaluation of the check called `name`."""
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def records(value: Any) -> list[dict[str, Any]]:
    """The rows of a table metadata value."""
    return [r.data for r in value.records]


def failed_steps(result: dg.ExecuteInProcessResult) -> list[str]:
    return [f.step_key for f in result.get_step_failure_events() if f.step_key]


def error_chain(result: dg.ExecuteInProcessResult, step: str) -> list[tuple[str, str]]:
    """(class name, message) of a failed step's error and its causes."""
    (failure,) = [f for f in result.get_step_failure_events() if f.step_key == step]
    chain = []
    err = failure.step_failure_data.error
    while err is not None:
        chain.append((err.cls_name, err.message))
        err = err.cause
    return chain
