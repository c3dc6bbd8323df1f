"""Names the Dagster layer shares: asset group names, run tags, and the CT run's asset selection."""

# Asset groups, one module per stage of the loop under ct_assets/defs/assets/.
INGESTION = "ingestion"
DATASETS = "datasets"
TRAINING = "training"
VALIDATION = "validation"
REGISTRY = "registry"
MONITORING = "monitoring"
PREDICTIONS = "predictions"

# Run tags.
TRIGGER_TAG = (
    "ct_assets/trigger"  # what started the run: landing, rows, decay, drift, staleness, cycle, forced...
)
BATCH_TAG = "ct_assets/newest_batch"  # the newest ingested batch a CT run was requested for
CT_RUN_TAG = "ct_assets/ct_run"  # the instance's run queue lets one run with this tag in flight
PID_TAG = "ct_assets/pid"  # the process executing the run (so a run left by a killed process is recovered)
HOST_TAG = "ct_assets/host"

# The assets of a CT run: the golden set is refreshed from the reserve first (when it moved).
CT_SELECTION = [
    "golden_dataset",
    "training_dataset",
    "challenger_model",
    "validation_report",
    "champion_model",
]

# Seconds; overrides both sensors' minimum intervals (tests, demos).
SENSOR_INTERVAL_ENV = "CT_ASSETS_SENSOR_INTERVAL"
