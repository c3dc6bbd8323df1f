"""Parsing the merged TOML into Settings: one small function per table, each error naming the file,
the table and the key."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ct_assets.config.settings import (
    INTERNAL_PREFIX,
    METRICS,
    SECONDARY_METRICS,
    Columns,
    DatasetSettings,
    Feature,
    FreshnessSettings,
    GateSettings,
    GuardrailSettings,
    Paths,
    RetrainSettings,
    Settings,
)
from ct_assets.errors import ConfigError

# LightGBM refuses feature names holding these ("special JSON characters") and turns spaces into '_',
# after which a saved model's features no longer match its card: such names are refused at load.
LIGHTGBM_NAME_CHARS = '",:[]{}'


class _Reader:
    """Typed access to one TOML table with errors that name the file, table and key."""

    def __init__(self, table: dict[str, Any], where: str, source: str, known: set[str] | None = None):
        self.table, self.where, self.source = table, where, source
        if known is not None:
            unknown = sorted(set(table) - known)
            if unknown:
                raise self.error(unknown[0], f"is not a known setting (known: {', '.join(sorted(known))})")

    def error(self, key: str, what: str) -> ConfigError:
        place = f"[{self.where}] {key}" if self.where else key
        return ConfigError(f"config {self.source}: {place} {what}")

    def get(self, key: str) -> Any:
        if key not in self.table:
            raise self.error(key, "is missing")
        return self.table[key]

    def text(self, key: str, *, allow_empty: bool = False) -> str:
        v = self.get(key)
        if not isinstance(v, str) or (not allow_empty and not v.strip()):
            raise self.error(key, f"must be a non-empty string, got {v!r}")
        return v

    def number(self, key: str, *, lo: float | None = None, hi: float | None = None) -> float:
        v = self.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise self.error(key, f"must be a number, got {v!r}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.error(key, f"must be within [{lo}, {hi}], got {v!r}")
        return float(v)

    def integer(self, key: str, *, lo: int = 0) -> int:
        v = self.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise self.error(key, f"must be an integer >= {lo}, got {v!r}")
        return v

    def table_of(self, key: str) -> dict[str, Any]:
        v = self.get(key)
        if not isinstance(v, dict):
            raise self.error(key, "must be a table")
        return v


def _one_line(text: str) -> str:
    """`text` with control characters written as escapes, so that an error stays on one line."""
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


def check_identifier(name: str, what: str, source: str) -> str:
    """Column names are quoted in SQL; refuse the few that could still confuse a reader or a file system
    (empty, too long, padded, or holding control characters such as NUL or a line break)."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 128
        or name != name.strip()
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
    ):
        raise ConfigError(_one_line(f"config {source}: {what} {name!r} is not a usable column name"))
    if name.startswith(INTERNAL_PREFIX):
        raise ConfigError(f"config {source}: {what} {name!r} starts with '_', which the warehouse reserves")
    return name


def parse_settings(raw: dict[str, Any], source: str, cwd: Path) -> Settings:
    """The merged TOML as Settings; raises ConfigError naming the file, the table and the key."""
    top = _Reader(raw, "", source, known=TOP_KEYS)
    task = top.text("task")
    if task != "binary":
        raise top.error("task", f"must be 'binary' (the only task supported so far), got {task!r}")
    metric = top.text("primary_metric")
    if metric not in METRICS:
        raise top.error("primary_metric", f"must be one of {', '.join(METRICS)}, got {metric!r}")
    threshold = top.number("decision_threshold", lo=0.0, hi=1.0)
    paths = _paths(_Reader(top.table_of("paths"), "paths", source, known=set(PATH_KEYS)), cwd)
    columns = _columns(_Reader(top.table_of("columns"), "columns", source, known=COLUMN_KEYS))
    features = _parse_features(top.table_of("features"), source)
    _check_roles(columns, features, source)
    retrain = _retrain(_Reader(top.table_of("retrain"), "retrain", source, known=RETRAIN_KEYS))
    guardrails = _guardrails(_Reader(top.table_of("guardrails"), "guardrails", source, known=GUARDRAIL_KEYS))
    dataset = _dataset(_Reader(top.table_of("dataset"), "dataset", source, known=DATASET_KEYS))
    gate = _gate(_Reader(top.table_of("gate"), "gate", source, known=GATE_KEYS))
    freshness = _freshness(_Reader(top.table_of("freshness"), "freshness", source, known=FRESHNESS_KEYS))
    ingest = _Reader(top.table_of("ingest"), "ingest", source, known={"lock_timeout_seconds", "chunk_rows"})
    training = _training(top.table_of("training"), source)
    webhook = _webhook(_Reader(top.table_of("alerts"), "alerts", source, known={"webhook_url"}))
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
}
PATH_KEYS = ("warehouse", "landing", "quarantine", "archive", "models", "reports", "state")
COLUMN_KEYS = {"event_time", "label", "label_classes", "row_id", "row_id_type", "slices", "exploration"}
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
    "secondary",
}
FRESHNESS_KEYS = {"max_data_lag_hours", "max_file_age_hours", "max_future_minutes", "max_event_age_days"}
GUARDRAIL_KEYS = {"max_training_seconds", "max_run_seconds"}


def _paths(p: _Reader, cwd: Path) -> Paths:
    """[paths]: every entry absolute, relative ones resolved against the working directory."""

    def resolve(key: str) -> Path:
        path = Path(p.text(key)).expanduser()
        return path if path.is_absolute() else (cwd / path)

    return Paths(**{k: resolve(k) for k in PATH_KEYS})


def _columns(c: _Reader) -> Columns:
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
    return Columns(
        event_time=check_identifier(c.text("event_time"), "[columns] event_time", source),
        label=check_identifier(c.text("label"), "[columns] label", source),
        label_classes=(classes[0], classes[1]),
        row_id=check_identifier(row_id, "[columns] row_id", source) if row_id else None,
        row_id_type=row_id_type,
        slices=tuple(check_identifier(s, "[columns] slices entry", source) for s in slices),
        exploration=check_identifier(exploration, "[columns] exploration", source) if exploration else None,
    )


def _check_roles(columns: Columns, features: tuple[Feature, ...], source: str) -> None:
    """No column plays two roles; every slice column is a categorical feature."""
    roles = [("[columns] event_time", columns.event_time), ("[columns] label", columns.label)]
    roles += [("[columns] row_id", columns.row_id)] if columns.row_id else []
    roles += [("[columns] exploration", columns.exploration)] if columns.exploration else []
    roles += [(f"[features.{f.name}]", f.name) for f in features]
    for i, (where, name) in enumerate(roles):
        clash = next((w for w, n in roles[:i] if n == name), None)
        if clash:
            raise ConfigError(f"config {source}: column {name!r} has two roles: {clash} and {where}")
    by_name = {f.name: f for f in features}
    for s in columns.slices:
        if s not in by_name or by_name[s].kind != "categorical":
            raise ConfigError(f"config {source}: [columns] slices entry {s!r} must be a categorical feature")


def _retrain(r: _Reader) -> RetrainSettings:
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


def _guardrails(gr: _Reader) -> GuardrailSettings:
    """[guardrails]: the cost limits of one CT run."""
    return GuardrailSettings(
        max_training_seconds=gr.number("max_training_seconds", lo=0.001),
        max_run_seconds=gr.number("max_run_seconds", lo=1.0),
    )


def _dataset(d: _Reader) -> DatasetSettings:
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
    )


def _gate(g: _Reader) -> GateSettings:
    """[gate] and [gate.secondary]: the promotion rule's tolerances and confidence."""
    rule = g.text("rule")
    if rule not in ("non_inferiority", "point"):
        raise g.error("rule", f"must be 'non_inferiority' or 'point', got {rule!r}")
    sec = _Reader(g.table_of("secondary"), "gate.secondary", g.source, known=set(SECONDARY_METRICS))
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
        secondary={m: sec.number(m, lo=0.0) for m in sec.table},
    )


def _freshness(fr: _Reader) -> FreshnessSettings:
    """[freshness]: data lag, file age, and how far in the future or past an event time may be."""
    return FreshnessSettings(
        max_data_lag_hours=fr.number("max_data_lag_hours", lo=0.0),
        max_file_age_hours=fr.number("max_file_age_hours", lo=0.0),
        max_future_minutes=fr.number("max_future_minutes", lo=0.0),
        max_event_age_days=fr.number("max_event_age_days", lo=0.0),
    )


def _training(table: dict[str, Any], source: str) -> dict[str, Any]:
    """[training]: LightGBM parameters, passed through; only the objective is checked."""
    training = dict(table)
    if training.get("objective", "binary") not in ("binary", "cross_entropy", "xentropy"):
        raise ConfigError(
            f"config {source}: [training] objective must be a binary objective for task 'binary'"
        )
    return training


def _webhook(al: _Reader) -> str:
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
            _one_line(
                f"config {source}: [features.{name}] cannot be a feature name: LightGBM keeps no feature "
                f"name holding whitespace or any of {' '.join(LIGHTGBM_NAME_CHARS)} (rename the column)"
            )
        )
    if not isinstance(spec, dict):
        raise ConfigError(f"config {source}: [features.{name}] must be a table with at least kind = ...")
    f = _Reader(spec, f"features.{name}", source, known={"kind", "required", "min", "max", "categories"})
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
