"""Parsing the merged TOML into Settings: one small function per table, each error naming the file,
the table and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ct_assets.config.cluster import parse_cluster
from ct_assets.config.engines import cluster_executor, training_engine
from ct_assets.config.reader import TableReader, check_identifier, one_line
from ct_assets.config.settings import (
    METRICS,
    SECONDARY_METRICS,
    Columns,
    DatasetSettings,
    Feature,
    FreshnessSettings,
    GateSettings,
    GuardrailSettings,
    HoldbackSettings,
    Paths,
    PredictionSettings,
    RetrainSettings,
    Settings,
)
from ct_assets.errors import ConfigError

# LightGBM refuses feature names holding these ("special JSON characters") and turns spaces into '_',
# after which a saved model's features no longer match its card: such names are refused at load.
LIGHTGBM_NAME_CHARS = '",:[]{}'


def parse_settings(raw: dict[str, Any], source: str, cwd: Path) -> Settings:
    """The merged TOML as Settings; raises ConfigError naming the file, the table and the key."""
    top = TableReader(raw, "", source, known=TOP_KEYS)
    task = top.text("task")
    if task != "binary":
        raise top.error("task", f"must be 'binary' (the only task supported so far), got {task!r}")
    metric = top.text("primary_metric")
    if metric not in METRICS:
        raise top.error("primary_metric", f"must be one of {', '.join(METRICS)}, got {metric!r}")
    threshold = top.number("decision_threshold", lo=0.0, hi=1.0)
    paths = _paths(TableReader(top.table_of("paths"), "paths", source, known=set(PATH_KEYS)), cwd)
    columns = _columns(TableReader(top.table_of("columns"), "columns", source, known=COLUMN_KEYS))
    features = _parse_features(top.table_of("features"), source)
    _check_roles(columns, features, source)
    retrain = _retrain(TableReader(top.table_of("retrain"), "retrain", source, known=RETRAIN_KEYS))
    guardrails = _guardrails(
        TableReader(top.table_of("guardrails"), "guardrails", source, known=GUARDRAIL_KEYS)
    )
    dataset = _dataset(TableReader(top.table_of("dataset"), "dataset", source, known=DATASET_KEYS))
    gate = _gate(TableReader(top.table_of("gate"), "gate", source, known=GATE_KEYS))
    freshness = _freshness(TableReader(top.table_of("freshness"), "freshness", source, known=FRESHNESS_KEYS))
    ingest = TableReader(
        top.table_of("ingest"), "ingest", source, known={"lock_timeout_seconds", "chunk_rows"}
    )
    training, engine = _training(top.table_of("training"), source)
    holdback = _holdback(TableReader(top.table_of("holdback"), "holdback", source, known=HOLDBACK_KEYS))
    predictions = _predictions(
        TableReader(top.table_of("predictions"), "predictions", source, known=PREDICTION_KEYS)
    )
    webhook = _webhook(TableReader(top.table_of("alerts"), "alerts", source, known={"webhook_url"}))
    executor = cluster_executor(raw.get("cluster", {}), source)
    return Settings(
        task=task,
        primary_metric=metric,
        decision_threshold=threshold,
        paths=paths,
        columns=columns,
        features=features,
        retrain=retrain,
        dataset=dataset,
        gate=gate,
        freshness=freshness,
        lock_timeout_seconds=ingest.number("lock_timeout_seconds", lo=0.0),
        guardrails=guardrails,
        training=training,
        webhook_url=webhook,
        source=source,
        raw=raw,
        ingest_chunk_rows=ingest.integer("chunk_rows", lo=1000),
        holdback=holdback,
        predictions=predictions,
        cluster=parse_cluster(top.table.get("cluster"), source),
        training_engine=engine,
        executor=executor,
    )


TOP_KEYS = {
    "task",
    "primary_metric",
    "decision_threshold",
    "paths",
    "columns",
    "features",
    "retrain",
    "dataset",
    "gate",
    "freshness",
    "ingest",
    "training",
    "alerts",
    "guardrails",
    "holdback",
    "predictions",
    "cluster",
}
PATH_KEYS = ("warehouse", "landing", "quarantine", "archive", "models", "reports", "state")
COLUMN_KEYS = {
    "event_time",
    "label",
    "label_classes",
    "row_id",
    "row_id_type",
    "slices",
    "exploration",
    "label_time",
}
RETRAIN_KEYS = {
    "min_new_rows",
    "cooldown_minutes",
    "max_trainings_per_day",
    "max_champion_age_hours",
    "decay_min_rows",
    "decay_floor",
    "decay_margin",
    "drift_psi",
    "drift_min_rows",
    "drift_action",
}
DATASET_KEYS = {
    "window_days",
    "holdout_fraction",
    "min_train_rows",
    "golden_fraction",
    "golden_max_rows",
    "golden_min_rows_per_slice",
    "exploration_target",
    "exploration_weight",
    "golden_refresh",
}
GATE_KEYS = {
    "tolerance",
    "slice_tolerance",
    "min_slice_rows",
    "metric_floor",
    "rule",
    "confidence",
    "false_block_rate",
    "bootstrap_resamples",
    "holdout_max_rows",
    "golden_tolerance",
    "secondary",
}
HOLDBACK_KEYS = {"enabled", "min_rows", "z", "min_drop", "history"}
FRESHNESS_KEYS = {"max_data_lag_hours", "max_file_age_hours", "max_future_minutes", "max_event_age_days"}
GUARDRAIL_KEYS = {"max_training_seconds", "max_run_seconds"}
PREDICTION_KEYS = {"max_rows_per_run", "shadow"}


def _paths(p: TableReader, cwd: Path) -> Paths:
    """[paths]: every entry absolute, relative ones resolved against the working directory."""

    def resolve(key: str) -> Path:
        path = Path(p.text(key)).expanduser()
        return path if path.is_absolute() else (cwd / path)

    return Paths(**{k: resolve(k) for k in PATH_KEYS})


def _columns(c: TableReader) -> Columns:
    """[columns]: which column plays which role."""
    source = c.source
    classes = c.get("label_classes")
    if (
        not isinstance(classes, list)
        or len(classes) != 2
        or classes[0] == classes[1]
        or not all(isinstance(x, str) or (isinstance(x, int) and not isinstance(x, bool)) for x in classes)
        or isinstance(classes[0], str) != isinstance(classes[1], str)
    ):
        raise c.error(
            "label_classes", f"must be two distinct integers or two distinct strings, got {classes!r}"
        )
    row_id = c.text("row_id", allow_empty=True) or None
    row_id_type = c.text("row_id_type")
    if row_id_type not in ("integer", "string"):
        raise c.error("row_id_type", f"must be 'integer' or 'string', got {row_id_type!r}")
    slices = c.get("slices")
    if not isinstance(slices, list) or not all(isinstance(s, str) for s in slices):
        raise c.error("slices", f"must be a list of column names, got {slices!r}")
    exploration = c.text("exploration", allow_empty=True) if c.table.get("exploration") else ""
    label_time = c.text("label_time", allow_empty=True) if c.table.get("label_time") else ""
    return Columns(
        event_time=check_identifier(c.text("event_time"), "[columns] event_time", source),
        label=check_identifier(c.text("label"), "[columns] label", source),
        label_classes=(classes[0], classes[1]),
        row_id=check_identifier(row_id, "[columns] row_id", source) if row_id else None,
        row_id_type=row_id_type,
        slices=tuple(check_identifier(s, "[columns] slices entry", source) for s in slices),
        exploration=check_identifier(exploration, "[columns] exploration", source) if exploration else None,
        label_time=check_identifier(label_time, "[columns] label_time", source) if label_time else None,
    )


def _check_roles(columns: Columns, features: tuple[Feature, ...], source: str) -> None:
    """No column plays two roles; every slice column is a categorical feature."""
    roles = [("[columns] event_time", columns.event_time), ("[columns] label", columns.label)]
    roles += [("[columns] row_id", columns.row_id)] if columns.row_id else []
    roles += [("[columns] exploration", columns.exploration)] if columns.exploration else []
    roles += [("[columns] label_time", columns.label_time)] if columns.label_time else []
    roles += [(f"[features.{f.name}]", f.name) for f in features]
    for i, (where, name) in enumerate(roles):
        clash = next((w for w, n in roles[:i] if n == name), None)
        if clash:
            raise ConfigError(f"config {source}: column {name!r} has two roles: {clash} and {where}")
    by_name = {f.name: f for f in features}
    for s in columns.slices:
        if s not in by_name or by_name[s].kind != "categorical":
            raise ConfigError(f"config {source}: [columns] slices entry {s!r} must be a categorical feature")


def _retrain(r: TableReader) -> RetrainSettings:
    """[retrain]: volume, decay, drift and staleness triggers, and how often at most."""
    drift_action = r.text("drift_action")
    if drift_action not in ("report", "retrain"):
        raise r.error("drift_action", f"must be 'report' or 'retrain', got {drift_action!r}")
    return RetrainSettings(
        min_new_rows=r.integer("min_new_rows", lo=1),
        cooldown_minutes=r.number("cooldown_minutes", lo=0.0),
        max_trainings_per_day=r.integer("max_trainings_per_day", lo=1),
        max_champion_age_hours=r.number("max_champion_age_hours", lo=0.0),
        decay_min_rows=r.integer("decay_min_rows", lo=1),
        decay_floor=r.number("decay_floor", lo=0.0),
        decay_margin=r.number("decay_margin", lo=0.0),
        drift_psi=r.number("drift_psi", lo=0.0),
        drift_min_rows=r.integer("drift_min_rows", lo=1),
        drift_action=drift_action,
    )


def _guardrails(gr: TableReader) -> GuardrailSettings:
    """[guardrails]: the cost limits of one CT run."""
    return GuardrailSettings(
        max_training_seconds=gr.number("max_training_seconds", lo=0.001),
        max_run_seconds=gr.number("max_run_seconds", lo=1.0),
    )


def _dataset(d: TableReader) -> DatasetSettings:
    """[dataset]: the training window, the holdout and the golden set."""
    return DatasetSettings(
        window_days=d.number("window_days", lo=0.0),
        holdout_fraction=d.number("holdout_fraction", lo=0.01, hi=0.9),
        min_train_rows=d.integer("min_train_rows", lo=10),
        golden_fraction=d.number("golden_fraction", lo=0.001, hi=0.5),
        golden_max_rows=d.integer("golden_max_rows", lo=10),
        golden_min_rows_per_slice=d.integer("golden_min_rows_per_slice", lo=0),
        exploration_target=d.number("exploration_target", lo=0.0, hi=1.0),
        exploration_weight=d.number("exploration_weight", lo=0.0),
        golden_refresh=d.number("golden_refresh", lo=0.0, hi=1.0),
    )


def _gate(g: TableReader) -> GateSettings:
    """[gate] and [gate.secondary]: the promotion rule's tolerances and confidence."""
    rule = g.text("rule")
    if rule not in ("non_inferiority", "point"):
        raise g.error("rule", f"must be 'non_inferiority' or 'point', got {rule!r}")
    sec = TableReader(g.table_of("secondary"), "gate.secondary", g.source, known=set(SECONDARY_METRICS))
    return GateSettings(
        tolerance=g.number("tolerance", lo=0.0),
        slice_tolerance=g.number("slice_tolerance", lo=0.0),
        min_slice_rows=g.integer("min_slice_rows", lo=1),
        metric_floor=g.number("metric_floor"),
        rule=rule,
        confidence=g.number("confidence", lo=0.5, hi=0.9999),
        false_block_rate=g.number("false_block_rate", lo=0.0001, hi=0.5),
        bootstrap_resamples=g.integer("bootstrap_resamples", lo=20),
        holdout_max_rows=g.integer("holdout_max_rows", lo=0),
        golden_tolerance=g.number("golden_tolerance", lo=0.0),
        secondary={m: sec.number(m, lo=0.0) for m in sec.table},
    )


def _holdback(h: TableReader) -> HoldbackSettings:
    """[holdback]: when a landed batch is held back from training as suspect."""
    enabled = h.get("enabled")
    if not isinstance(enabled, bool):
        raise h.error("enabled", f"must be true or false, got {enabled!r}")
    return HoldbackSettings(
        enabled=enabled,
        min_rows=h.integer("min_rows", lo=10),
        z=h.number("z", lo=0.0),
        min_drop=h.number("min_drop", lo=0.0),
        history=h.integer("history", lo=2),
    )


def _predictions(p: TableReader) -> PredictionSettings:
    """[predictions]: how many rows an ingest run scores at most, and whether challengers shadow-score."""
    shadow = p.get("shadow")
    if not isinstance(shadow, bool):
        raise p.error("shadow", f"must be true or false, got {shadow!r}")
    return PredictionSettings(max_rows_per_run=p.integer("max_rows_per_run", lo=1), shadow=shadow)


def _freshness(fr: TableReader) -> FreshnessSettings:
    """[freshness]: data lag, file age, and how far in the future or past an event time may be."""
    return FreshnessSettings(
        max_data_lag_hours=fr.number("max_data_lag_hours", lo=0.0),
        max_file_age_hours=fr.number("max_file_age_hours", lo=0.0),
        max_future_minutes=fr.number("max_future_minutes", lo=0.0),
        max_event_age_days=fr.number("max_event_age_days", lo=0.0),
    )


def _training(table: dict[str, Any], source: str) -> tuple[dict[str, Any], str]:
    """[training]: LightGBM parameters, passed through (only the objective is checked), and the engine
    that trains them, which is not a LightGBM parameter and is taken out."""
    training = dict(table)
    if training.get("objective", "binary") not in ("binary", "cross_entropy", "xentropy"):
        raise ConfigError(
            f"config {source}: [training] objective must be a binary objective for task 'binary'"
        )
    engine = training_engine(training.pop("engine", "lightgbm"), source)
    return training, engine


def _webhook(al: TableReader) -> str:
    """[alerts] webhook_url: empty, or an http(s) URL."""
    webhook = al.text("webhook_url", allow_empty=True)
    if webhook and not webhook.startswith(("http://", "https://")):
        raise al.error("webhook_url", f"must be an http(s) URL or empty, got {webhook!r}")
    return webhook


def _parse_features(table: dict[str, Any], source: str) -> tuple[Feature, ...]:
    """[features]: one [features.NAME] table per model input."""
    if not table:
        raise ConfigError(f"config {source}: [features] must name at least one feature")
    return tuple(_feature(name, spec, source) for name, spec in table.items())


def _feature(name: str, spec: Any, source: str) -> Feature:
    """[features.NAME]: numeric (optionally bounded) or categorical (optionally a closed set)."""
    check_identifier(name, f"[features.{name}]", source)
    if any(ch.isspace() or ch in LIGHTGBM_NAME_CHARS for ch in name):
        raise ConfigError(
            one_line(
                f"config {source}: [features.{name}] cannot be a feature name: LightGBM keeps no feature "
                f"name holding whitespace or any of {' '.join(LIGHTGBM_NAME_CHARS)} (rename the column)"
            )
        )
    if not isinstance(spec, dict):
        raise ConfigError(f"config {source}: [features.{name}] must be a table with at least kind = ...")
    f = TableReader(spec, f"features.{name}", source, known={"kind", "required", "min", "max", "categories"})
    kind = f.text("kind")
    required = spec.get("required", False)
    if not isinstance(required, bool):
        raise f.error("required", f"must be true or false, got {required!r}")
    if kind == "numeric":
        lo = f.number("min") if "min" in spec else None
        hi = f.number("max") if "max" in spec else None
        if lo is not None and hi is not None and lo > hi:
            raise f.error("min", f"is above max ({lo} > {hi})")
        if "categories" in spec:
            raise f.error("categories", "applies to categorical features only")
        return Feature(name, kind, required, lo, hi, None)
    if kind == "categorical":
        cats = spec.get("categories")
        if cats is not None and (
            not isinstance(cats, list)
            or not cats
            or not all(isinstance(x, str) for x in cats)
            or len(set(cats)) != len(cats)
        ):
            raise f.error("categories", f"must be a non-empty list of distinct strings, got {cats!r}")
        if "min" in spec or "max" in spec:
            raise f.error("min", "applies to numeric features only")
        return Feature(name, kind, required, None, None, tuple(cats) if cats else None)
    raise f.error("kind", f"must be 'numeric' or 'categorical', got {kind!r}")
