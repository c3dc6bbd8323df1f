"""Builds the one Dagster Definitions object of ct_assets, when the definitions load (not at import of
the modules it gathers): sensor intervals come from the environment then, the assets' freshness
policies from the configuration (the file the SettingsResource reads too), and each asset's code
version from the source of its module and of every project module that module imports."""

import warnings

import dagster as dg

from ct_assets.common.code_versions import code_version
from ct_assets.config import load_settings
from ct_assets.defs.assets import datasets, ingestion, monitoring, predictions, registry, training, validation
from ct_assets.defs.checks.freshness import champion_model_data_lag_within_limit, raw_deltas_newest_file_fresh
from ct_assets.defs.executors import executor_for
from ct_assets.defs.jobs import ct_job, freshness_job, golden_job, ingest_job, registry_job
from ct_assets.defs.maintenance import lake_maintenance_job, lake_maintenance_schedule
from ct_assets.defs.policies import freshness_policies
from ct_assets.defs.resources import HandoffIOManager, SettingsResource
from ct_assets.defs.sensors import (
    LANDING_INTERVAL_SECONDS,
    RETRAIN_INTERVAL_SECONDS,
    build_sensors,
    freshness_schedule,
    interval_seconds,
    run_failure_alert_sensor,
)

# Every asset beside the module defining it: that module and what it imports make its code version.
ASSETS = [
    (ingestion, ingestion.raw_deltas),
    (datasets, datasets.golden_dataset),
    (datasets, datasets.training_dataset),
    (training, training.challenger_model),
    (validation, validation.validation_report),
    (registry, registry.champion_model),
    (monitoring, monitoring.champion_performance),
    (predictions, predictions.predictions),
]


def build_definitions() -> dg.Definitions:
    """Every asset, check, job, sensor, schedule and resource of the loop."""
    # Output(data_version=...) is how an asset states its content hash; Dagster still labels it beta.
    warnings.filterwarnings("ignore", message=".*data_version.*", category=dg.BetaWarning)
    settings_resource = SettingsResource()
    settings = load_settings()
    policies = freshness_policies(settings)
    versions = {asset.key.to_user_string(): code_version(module.__name__) for module, asset in ASSETS}
    assets = dg.map_asset_specs(
        lambda spec: spec.replace_attributes(
            freshness_policy=policies.get(spec.key.to_user_string()),
            code_version=versions[spec.key.to_user_string()],
        ),
        [asset for _, asset in ASSETS],
    )
    # Cluster mode only: the DuckLake warehouse's nightly maintenance (the embedded file needs none).
    maintenance = [lake_maintenance_job] if settings.cluster is not None else []
    sensors = build_sensors(
        interval_seconds(LANDING_INTERVAL_SECONDS), interval_seconds(RETRAIN_INTERVAL_SECONDS)
    )
    return dg.Definitions(
        assets=assets,
        asset_checks=[raw_deltas_newest_file_fresh, champion_model_data_lag_within_limit],
        jobs=[ingest_job, ct_job, registry_job, golden_job, freshness_job, *maintenance],
        sensors=[*sensors, run_failure_alert_sensor],
        schedules=[freshness_schedule, *([lake_maintenance_schedule] if maintenance else [])],
        resources={
            "settings": settings_resource,
            # Replaces Dagster's default (pickling) IO manager for every asset: JSON hand-offs only.
            "io_manager": HandoffIOManager(settings=settings_resource),
        },
        executor=executor_for(settings),
    )
