"""The one TOML configuration: columns and their roles, thresholds, paths and LightGBM parameters."""

from __future__ import annotations

import copy
import math
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ct_assets.errors import ConfigError

CONFIG_ENV_VAR = "CT_ASSETS_CONFIG"
INTERNAL_PREFIX = "_"  # column names starting with this are the warehouse's own (_batch_id, _row_hash)
# LightGBM refuses feature names holding these ("special JSON characters") and turns spaces into '_',
# after which a saved model's features no longer match its card: such names are refused at load.
LIGHTGBM_NAME_CHARS = '",:[]{}'
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


def default_config_text() -> str:
    return resources.files("ct_assets").joinpath("default_config.toml").read_text(encoding="utf-8")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; the [features] table and every non-table value are replaced whole."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key != "features" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_settings(path: str | os.PathLike[str] | None = None, *, cwd: Path | None = None) -> Settings:
    """Load the defaults, merge the file at `path` (or $CT_ASSETS_CONFIG) over them, and validate.

    Raises ConfigError with a one-line message naming the file, the table and the key.
    """
    if path is None:
        path = os.environ.get(CONFIG_ENV_VAR) or None
    raw = tomllib.loads(default_config_text())
    source = "defaults"
    if path is not None:
        p = Path(path).expanduser()
        source = str(p)
        try:
            user = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist (from {CONFIG_ENV_VAR} or --config)") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {p} cannot be read: {e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {p} is not valid TOML: {e}") from None
        raw = _merge(raw, user)
    return _parse(raw, source, cwd or Path.cwd())


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


def _parse(raw: dict[str, Any], source: str, cwd: Path) -> Settings:
    top = _Reader(
        raw,
        "",
        source,
        known={
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
        },
    )
    task = top.text("task")
    if task != "binary":
        raise top.error("task", f"must be 'binary' (the only task supported so far), got {task!r}")
    metric = top.text("primary_metric")
    if metric not in METRICS:
        raise top.error("primary_metric", f"must be one of {', '.join(METRICS)}, got {metric!r}")
    threshold = top.number("decision_threshold", lo=0.0, hi=1.0)

    p = _Reader(
        top.table_of("paths"),
        "paths",
        source,
        known={"warehouse", "landing", "quarantine", "archive", "models", "reports", "state"},
    )

    def resolve(key: str) -> Path:
        path = Path(p.text(key)).expanduser()
        return path if path.is_absolute() else (cwd / path)

    paths = Paths(
        **{
            k: resolve(k)
            for k in ("warehouse", "landing", "quarantine", "archive", "models", "reports", "state")
        }
    )

    c = _Reader(
        top.table_of("columns"),
        "columns",
        source,
        known={"event_time", "label", "label_classes", "row_id", "row_id_type", "slices", "exploration"},
    )
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
    columns = Columns(
        event_time=check_identifier(c.text("event_time"), "[columns] event_time", source),
        label=check_identifier(c.text("label"), "[columns] label", source),
        label_classes=(classes[0], classes[1]),
        row_id=check_identifier(row_id, "[columns] row_id", source) if row_id else None,
        row_id_type=row_id_type,
        slices=tuple(check_identifier(s, "[columns] slices entry", source) for s in slices),
        exploration=check_identifier(c.text("exploration", allow_empty=True), "[columns] exploration", source)
        if c.table.get("exploration")
        else None,
    )

    features = _parse_features(top.table_of("features"), source)
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

    r = _Reader(
        top.table_of("retrain"),
        "retrain",
        source,
        known={
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
        },
    )
    drift_action = r.text("drift_action")
    if drift_action not in ("report", "retrain"):
        raise r.error("drift_action", f"must be 'report' or 'retrain', got {drift_action!r}")
    retrain = RetrainSettings(
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
    gr = _Reader(
        top.table_of("guardrails"), "guardrails", source, known={"max_training_seconds", "max_run_seconds"}
    )
    guardrails = GuardrailSettings(
        max_training_seconds=gr.number("max_training_seconds", lo=0.001),
        max_run_seconds=gr.number("max_run_seconds", lo=1.0),
    )
    d = _Reader(
        top.table_of("dataset"),
        "dataset",
        source,
        known={
            "window_days",
            "holdout_fraction",
            "min_train_rows",
            "golden_fraction",
            "golden_max_rows",
            "golden_min_rows_per_slice",
            "exploration_target",
            "exploration_weight",
        },
    )
    dataset = DatasetSettings(
        window_days=d.number("window_days", lo=0.0),
        holdout_fraction=d.number("holdout_fraction", lo=0.01, hi=0.9),
        min_train_rows=d.integer("min_train_rows", lo=10),
        golden_fraction=d.number("golden_fraction", lo=0.001, hi=0.5),
        golden_max_rows=d.integer("golden_max_rows", lo=10),
        golden_min_rows_per_slice=d.integer("golden_min_rows_per_slice", lo=0),
        exploration_target=d.number("exploration_target", lo=0.0, hi=1.0),
        exploration_weight=d.number("exploration_weight", lo=0.0),
    )
    g = _Reader(
        top.table_of("gate"),
        "gate",
        source,
        known={
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
        },
    )
    rule = g.text("rule")
    if rule not in ("non_inferiority", "point"):
        raise g.error("rule", f"must be 'non_inferiority' or 'point', got {rule!r}")
    sec = _Reader(g.table_of("secondary"), "gate.secondary", source, known=set(SECONDARY_METRICS))
    gate = GateSettings(
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
    fr = _Reader(
        top.table_of("freshness"),
        "freshness",
        source,
        known={"max_data_lag_hours", "max_file_age_hours", "max_future_minutes", "max_event_age_days"},
    )
    freshness = FreshnessSettings(
        max_data_lag_hours=fr.number("max_data_lag_hours", lo=0.0),
        max_file_age_hours=fr.number("max_file_age_hours", lo=0.0),
        max_future_minutes=fr.number("max_future_minutes", lo=0.0),
        max_event_age_days=fr.number("max_event_age_days", lo=0.0),
    )
    ing = _Reader(top.table_of("ingest"), "ingest", source, known={"lock_timeout_seconds", "chunk_rows"})
    training = dict(top.table_of("training"))
    if training.get("objective", "binary") not in ("binary", "cross_entropy", "xentropy"):
        raise ConfigError(
            f"config {source}: [training] objective must be a binary objective for task 'binary'"
        )
    al = _Reader(top.table_of("alerts"), "alerts", source, known={"webhook_url"})
    webhook = al.text("webhook_url", allow_empty=True)
    if webhook and not webhook.startswith(("http://", "https://")):
        raise al.error("webhook_url", f"must be an http(s) URL or empty, got {webhook!r}")

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
        lock_timeout_seconds=ing.number("lock_timeout_seconds", lo=0.0),
        guardrails=guardrails,
        training=training,
        webhook_url=webhook,
        source=source,
        raw=raw,
        ingest_chunk_rows=ing.integer("chunk_rows", lo=1000),
    )


def _parse_features(table: dict[str, Any], source: str) -> tuple[Feature, ...]:
    if not table:
        raise ConfigError(f"config {source}: [features] must name at least one feature")
    out = []
    for name, spec in table.items():
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
            out.append(Feature(name, kind, required, lo, hi, None))
        elif kind == "categorical":
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
            out.append(Feature(name, kind, required, None, None, tuple(cats) if cats else None))
        else:
            raise f.error("kind", f"must be 'numeric' or 'categorical', got {kind!r}")
    return tuple(out)


def effective_config_toml(settings: Settings) -> str:
    """The effective configuration as TOML, a starting point for a user's own file."""
    import tomli_w

    header = (
        "# ct_assets effective configuration "
        f"(defaults merged with: {settings.source}).\n"
        "# Save it, edit it, and point CT_ASSETS_CONFIG at it. Relative paths resolve against the\n"
        "# working directory.\n\n"
    )
    return header + tomli_w.dumps(settings.raw)
