"""Builds the one Dagster Definitions object of ct_assets, when the definitions load (not at import of
the modules it gathers): sensor intervals come from the environment then."""

import warnings

import dagster as dg

from ct_assets.defs.assets.datasets import golden_dataset, training_dataset
from ct_assets.defs.assets.ingestion import raw_deltas
from ct_assets.defs.assets.monitoring import champion_performance
from ct_assets.defs.assets.predictions import predictions
from ct_assets.defs.assets.registry import champion_model
from ct_assets.defs.assets.training import challenger_model
from ct_assets.defs.assets.validation import validation_report
from ct_assets.defs.checks.freshness import champion_model_data_lag_within_limit, raw_deltas_newest_file_fresh
from ct_assets.defs.jobs import ct_job, freshness_job, golden_job, ingest_job, registry_job
from ct_assets.defs.resources import HandoffIOManager, SettingsResource
from ct_assets.defs.sensors import (
    LANDING_INTERVAL_SECONDS,
    RETRAIN_INTERVAL_SECONDS,
    build_sensors,
    freshness_schedule,
    interval_seconds,
    run_failure_alert_sensor,
)


def build_definitions() -> dg.Definitions:
    """Every asset, check, job, sensor, schedule and resource of the loop."""
    # Output(data_version=...) is how an asset states its content hash; Dagster still labels it beta.
    warnings.filterwarnings("ignore", message=".*data_version.*", category=dg.BetaWarning)
    settings_resource = SettingsResource()
    sensors = build_sensors(
        interval_seconds(LANDING_INTERVAL_SECONDS), interval_seconds(RETRAIN_INTERVAL_SECONDS)
    )
    return dg.Definitions(
        assets=[
            raw_deltas,
            golden_dataset,
            training_dataset,
            challenger_model,
            validation_report,
            champion_model,
            champion_performance,
            predictions,
        ],
        asset_checks=[raw_deltas_newest_file_fresh, champion_model_data_lag_within_limit],
        jobs=[ingest_job, ct_job, registry_job, golden_job, freshness_job],
        sensors=[*sensors, run_failure_alert_sensor],
        schedules=[freshness_schedule],
        resources={
            "settings": settings_resource,
            # Replaces Dagster's default (pickling) IO manager for every asset: JSON hand-offs only.
            "io_manager": HandoffIOManager(settings=settings_resource),
        },
        # One process per run, steps in it: no per-step process start-up, and one warehouse writer per run.
        executor=dg.in_process_executor,
    )
