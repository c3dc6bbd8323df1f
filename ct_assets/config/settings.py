"""The one TOML configuration: columns and their roles, thresholds, paths and LightGBM parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INTERNAL_PREFIX = "_"  # column names starting with this are the warehouse's own (_batch_id, _row_hash)
METRICS = ("roc_auc", "log_loss", "brier", "f1", "precision", "recall")
SECONDARY_METRICS = ("log_loss", "brier", "calibration_error", "f1", "precision", "recall")
LOWER_IS_BETTER = frozenset({"log_loss", "brier"})


@dataclass(frozen=True)
class Feature:
    """One model input: numeric (optionally bounded) or categorical (optionally a closed set)."""

    name: str
    kind: str  # "numeric" | "categorical"
    required: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Columns:
    """Which column plays which role."""

    event_time: str
    label: str
    label_classes: tuple[Any, Any]  # (negative, positive)
    row_id: str | None
    row_id_type: str  # "integer" | "string"
    slices: tuple[str, ...]
    exploration: str | None = None  # a 0/1 flag: the row was collected under a randomised policy
    label_time: str | None = None  # in label files: when the label became known (optional column)

    @property
    def label_is_text(self) -> bool:
        return isinstance(self.label_classes[0], str)


@dataclass(frozen=True)
class Paths:
    """Where things live; all absolute (relative entries resolve against the working directory)."""

    warehouse: Path
    landing: Path
    quarantine: Path
    archive: Path
    models: Path
    reports: Path
    state: Path


@dataclass(frozen=True)
class DatasetSettings:
    window_days: float
    holdout_fraction: float
    min_train_rows: int
    golden_fraction: float
    golden_max_rows: int
    golden_min_rows_per_slice: int
    exploration_target: float = 0.0
    exploration_weight: float = 1.0
    golden_refresh: float = 0.1  # share of changed rows that makes a new golden version (0: frozen)


@dataclass(frozen=True)
class GateSettings:
    tolerance: float
    slice_tolerance: float
    min_slice_rows: int
    metric_floor: float
    rule: str = "non_inferiority"
    confidence: float = 0.95
    false_block_rate: float = 0.05
    bootstrap_resamples: int = 200
    secondary: dict[str, float] = field(default_factory=dict)
    holdout_max_rows: int = 250_000  # the gate compares on the newest this many holdout rows (0: all)
    golden_tolerance: float = 0.05  # the golden set bounds catastrophic forgetting only: a larger tolerance


@dataclass(frozen=True)
class RetrainSettings:
    """When to retrain: volume, decay on fresh labels, drift, staleness; and how often at most."""

    min_new_rows: int
    cooldown_minutes: float = 0.0
    max_trainings_per_day: int = 1000
    max_champion_age_hours: float = 0.0  # 0: no staleness fallback
    decay_min_rows: int = 2000
    decay_floor: float = 0.0  # 0: no absolute floor
    decay_margin: float = 0.03
    drift_psi: float = 0.2
    drift_min_rows: int = 2000
    drift_action: str = "report"  # report | retrain


@dataclass(frozen=True)
class HoldbackSettings:
    """Per-batch evidence: a landed batch on which the champion does far worse than on the batches before
    it is held back from training until the next batch confirms the shift or refutes it (see
    ct_assets.core.monitoring.evidence)."""

    enabled: bool = True
    min_rows: int = 1000  # labelled rows a batch needs to be judged
    z: float = 4.0  # a batch is suspect when its drop exceeds z times the champion's batch-to-batch spread...
    min_drop: float = 0.05  # ... and this much of the primary metric
    history: int = 8  # the champion's latest judged batches its reference is taken from


@dataclass(frozen=True)
class PredictionSettings:
    """[predictions]: the champion scores the rows that land (see ct_assets.core.predictions)."""

    max_rows_per_run: int = 1_000_000  # rows scored per ingest run at most, newest first; the rest wait
    shadow: bool = True  # a challenger awaiting promotion or review shadow-scores the same rows


@dataclass(frozen=True)
class GuardrailSettings:
    max_training_seconds: float = 900.0
    max_run_seconds: float = 3600.0


@dataclass(frozen=True)
class FreshnessSettings:
    max_data_lag_hours: float
    max_file_age_hours: float
    max_future_minutes: float
    max_event_age_days: float = 3650.0  # older event times are rejected at ingest (0: no limit)


@dataclass(frozen=True)
class ClusterSettings:
    """[cluster] (ct_assets.config.cluster): where the shared warehouse, objects and databases are."""

    objects: str  # s3://bucket/prefix: landing/, quarantine/, archive/, models/, reports/, state/ below it
    data_path: str  # DuckLake data files: s3://bucket/prefix/ or a folder every host mounts
    catalog_db: str = "ct_catalog"  # PostgreSQL database of the DuckLake catalog
    state_db: str = "ct_state"  # PostgreSQL database of the file claims, id counters and locks
    dagster_db: str = "ct_dagster"  # PostgreSQL database of the Dagster instance

    def object_uri(self, area: str, name: str = "") -> str:
        """s3://bucket/prefix/<area>/<name>."""
        return f"{self.objects.rstrip('/')}/{area}/{name}"


@dataclass(frozen=True)
class Settings:
    """The effective configuration: defaults merged with the user's file."""

    task: str
    primary_metric: str
    decision_threshold: float
    paths: Paths
    columns: Columns
    features: tuple[Feature, ...]
    retrain: RetrainSettings
    dataset: DatasetSettings
    gate: GateSettings
    freshness: FreshnessSettings
    lock_timeout_seconds: float
    guardrails: GuardrailSettings
    training: dict[str, Any]
    webhook_url: str
    source: str  # where the user's part came from ("defaults" or a file path)
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)
    ingest_chunk_rows: int = 500_000  # [ingest] chunk_rows: rows read, validated and appended at a time
    holdback: HoldbackSettings = field(default_factory=HoldbackSettings)
    predictions: PredictionSettings = field(default_factory=PredictionSettings)
    cluster: ClusterSettings | None = None  # [cluster]: None in the embedded mode
    # [training] engine: "lightgbm" (one process, byte-reproducible) or "dask" (lightgbm.dask on workers)
    training_engine: str = "lightgbm"
    # [cluster] executor: where a launched run's steps execute, "in_process" or "dask" (Dask workers)
    executor: str = "in_process"

    @property
    def min_new_rows(self) -> int:
        return self.retrain.min_new_rows

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def stored_columns(self) -> list[str]:
        """The user columns kept in the warehouse, in their table order."""
        cols = [self.columns.event_time]
        if self.columns.row_id:
            cols.append(self.columns.row_id)
        cols += self.feature_names
        cols.append(self.columns.label)
        if self.columns.exploration:
            cols.append(self.columns.exploration)
        return cols
