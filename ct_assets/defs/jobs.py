"""Jobs: ingest landed files, run the continuous-training loop, change the champion, check freshness."""

import dagster as dg

from ct_assets.defs.assets.datasets import golden_dataset, training_dataset
from ct_assets.defs.assets.ingestion import raw_deltas
from ct_assets.defs.assets.monitoring import champion_performance
from ct_assets.defs.assets.predictions import predictions
from ct_assets.defs.assets.registry import champion_model
from ct_assets.defs.assets.training import challenger_model
from ct_assets.defs.assets.validation import validation_report
from ct_assets.defs.checks.freshness import champion_model_data_lag_within_limit, raw_deltas_newest_file_fresh
from ct_assets.defs.constants import CT_RUN_TAG

FRESHNESS_CHECKS = dg.AssetSelection.checks(
    raw_deltas_newest_file_fresh, champion_model_data_lag_within_limit
)
CT_ASSETS = [golden_dataset, training_dataset, challenger_model, validation_report, champion_model]

ingest_job = dg.define_asset_job(
    name="ingest_job",
    selection=dg.AssetSelection.assets(raw_deltas, predictions, champion_performance) | FRESHNESS_CHECKS,
    description="Ingest every ready file in the landing folder into raw_deltas, with its checks; then the "
    "champion's predictions for the new rows (and a waiting challenger's shadow scores), and the champion "
    "scored on the fresh labels with the drift measured.",
)

ct_job = dg.define_asset_job(
    name="ct_job",
    selection=dg.AssetSelection.assets(*CT_ASSETS)
    | dg.AssetSelection.checks(champion_model_data_lag_within_limit),
    description="Continuous training: training data set, challenger, validation report with its blocking "
    "checks, and promotion (golden set built first when missing).",
    # dagster/max_runtime is set per run by the retrain sensor (from [guardrails] max_run_seconds), not
    # here: a job-level tag would also reach in-process `cycle` runs, which run monitoring can only mark
    # failed while their process goes on (they have their own wall-clock guard).
    tags={CT_RUN_TAG: "true"},
)

registry_job = dg.define_asset_job(
    name="registry_job",
    selection=dg.AssetSelection.assets(champion_model),
    description="A person's registry action: approve a blocked challenger or roll the champion back.",
)

golden_job = dg.define_asset_job(
    name="golden_job",
    selection=dg.AssetSelection.assets(golden_dataset),
    description="Rebuild the golden set on request (`ct-assets golden rebuild --reason ...`), recorded in the ledger.",
)

freshness_job = dg.define_asset_job(
    name="freshness_job",
    selection=FRESHNESS_CHECKS,
    description="Freshness checks only: newest landed file age and the champion's data lag.",
)
