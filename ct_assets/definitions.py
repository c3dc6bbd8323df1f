"""The one Dagster Definitions object of ct_assets (what `dagster dev` and `ct-assets` load)."""

import warnings

import dagster as dg

from ct_assets.assets.datasets import golden_dataset, training_dataset
from ct_assets.assets.ingestion import (
    champion_model_data_lag_within_limit,
    raw_deltas,
    raw_deltas_newest_file_fresh,
)
from ct_assets.assets.monitoring import champion_performance
from ct_assets.assets.registry import champion_model
from ct_assets.assets.training import challenger_model
from ct_assets.assets.validation import validation_report
from ct_assets.jobs import ct_job, freshness_job, golden_job, ingest_job, registry_job
from ct_assets.resources import HandoffIOManager, SettingsResource
from ct_assets.sensors import freshness_schedule, landing_sensor, retrain_sensor, run_failure_alert_sensor

# Output(data_version=...) is how an asset states its content hash; Dagster still labels it beta.
warnings.filterwarnings("ignore", message=".*data_version.*", category=dg.BetaWarning)

settings_resource = SettingsResource()

defs = dg.Definitions(
    assets=[
        raw_deltas,
        golden_dataset,
        training_dataset,
        challenger_model,
        validation_report,
        champion_model,
        champion_performance,
    ],
    asset_checks=[raw_deltas_newest_file_fresh, champion_model_data_lag_within_limit],
    jobs=[ingest_job, ct_job, registry_job, golden_job, freshness_job],
    sensors=[landing_sensor, retrain_sensor, run_failure_alert_sensor],
    schedules=[freshness_schedule],
    resources={
        "settings": settings_resource,
        # Replaces Dagster's default (pickling) IO manager for every asset: JSON hand-offs only.
        "io_manager": HandoffIOManager(settings=settings_resource),
    },
    # One process per run, steps in it: no per-step process start-up, and one warehouse writer per run.
    executor=dg.in_process_executor,
)
