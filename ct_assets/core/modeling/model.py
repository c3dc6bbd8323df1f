"""LightGBM models: deterministic training, text model + JSON card on disk, loading and scoring.

Never pickled: `model.txt` is LightGBM's text format and `card.json` holds everything needed to use
and trace it (features and their category codes, params, seed, data hashes, code version, timings).
A model folder appears under its final name only when both files are complete (written in a
temporary folder, then renamed), and the card records the model file's SHA-256, checked on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ct_assets.common import failpoints
from ct_assets.config import Settings
from ct_assets.errors import CtError, RegistryError

VERSION_PATTERN = re.compile(r"v\d{4,}")
MODEL_FILE = "model.txt"
CARD_FILE = "card.json"


@cache
def code_version() -> str:
    """ct_assets's version plus a hash of its source files: what code made a model."""
    from ct_assets import __version__

    root = Path(__file__).resolve().parents[2]  # the ct_assets package
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".toml") and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return f"{__version__}+{h.hexdigest()[:12]}"


def feature_spec(settings: Settings, train: pl.DataFrame) -> list[dict[str, Any]]:
    """Features with the category lists that fix their integer codes (from the config, else the data)."""
    return feature_spec_from(settings, lambda name: sorted(train[name].drop_nulls().unique().to_list()))


def feature_spec_from(
    settings: Settings, data_categories: Callable[[str], list[Any]]
) -> list[dict[str, Any]]:
    """feature_spec with the training data's sorted distinct values of a column given by `data_categories`."""
    spec = []
    for f in settings.features:
        item: dict[str, Any] = {"name": f.name, "kind": f.kind}
        if f.kind == "categorical":
            item["categories"] = list(f.categories) if f.categories else data_categories(f.name)
        spec.append(item)
    return spec


def encode(frame: pl.DataFrame, features: list[dict[str, Any]]) -> np.ndarray:
    """The model matrix: numerics as float64, categories as their codes; unknown or null -> NaN (missing)."""
    exprs = []
    for f in features:
        col = pl.col(f["name"])
        if f["kind"] == "categorical":
            codes = list(range(len(f["categories"])))
            col = col.cast(pl.String).replace_strict(
                f["categories"], codes, default=None, return_dtype=pl.Float64
            )
        exprs.append(col.cast(pl.Float64).alias(f["name"]))
    return frame.select(exprs).to_numpy(order="c")


def labels(frame: pl.DataFrame, settings: Settings) -> np.ndarray:
    """1 for the positive class, 0 for the negative one (rows with null labels must be filtered out)."""
    positive = settings.columns.label_classes[1]
    return (frame[settings.columns.label] == positive).cast(pl.Int8).to_numpy()


def sample_weights(frame: pl.DataFrame, flag: str | None, weight: float | None) -> np.ndarray | None:
    """Per-row weights that up- (or down-) weight exploration rows; None when all rows weigh 1."""
    if not flag or weight is None or weight == 1.0 or flag not in frame.columns:
        return None
    return frame[flag].cast(pl.Float64).fill_null(0.0).to_numpy() * (weight - 1.0) + 1.0


@dataclass
class TrainedModel:
    booster: Any
    features: list[dict[str, Any]]
    params: dict[str, Any]
    seconds: float
    engine: str = "lightgbm"  # [training] engine that trained it, recorded in the card
    engine_info: dict[str, Any] = field(default_factory=dict)  # the card's "dask" entry for that engine


class TrainingBudgetExceeded(CtError):
    """LightGBM was stopped because the training time budget ran out."""


def budget_callback(
    budget_seconds: float,
    started: float,
    total: int,
    source: str,
    clock: Callable[[], float] = time.perf_counter,
) -> Any:
    """A LightGBM callback raising TrainingBudgetExceeded once `clock() - started` passes the budget."""

    def stop_when_over_budget(env: Any) -> None:
        spent = clock() - started
        if spent > budget_seconds:
            raise TrainingBudgetExceeded(
                f"training stopped: its time budget of {budget_seconds:g} s ({source}) ran out after "
                f"{env.iteration + 1} of {total} iterations ({spent:.1f} s); no model was saved"
            )

    stop_when_over_budget.order = 0  # type: ignore[attr-defined]  # LightGBM orders callbacks by this
    return stop_when_over_budget


def num_rounds(params: dict[str, Any]) -> int:
    """The boosting rounds the parameters ask for (LightGBM's default: 100)."""
    return int(params.get("num_iterations", params.get("n_estimators", params.get("num_boost_round", 100))))


def training_input(
    train_frame: pl.DataFrame,
    settings: Settings,
    params: dict[str, Any] | None,
    features: list[dict[str, Any]] | None,
) -> tuple[dict[str, Any], list[dict[str, Any]], np.ndarray, np.ndarray]:
    """What any engine trains from: the parameters (the configured ones unless given), the features
    (from the data unless given), the model matrix and the 0/1 labels; refuses a single class."""
    params = dict(settings.training if params is None else params)
    features = features or feature_spec(settings, train_frame)
    y = labels(train_frame, settings)
    if len(np.unique(y)) < 2:
        raise CtError("the training rows hold only one class; cannot train a binary model")
    return params, features, encode(train_frame, features), y


def categorical_names(features: list[dict[str, Any]]) -> list[str]:
    return [f["name"] for f in features if f["kind"] == "categorical"]


def _failpoint_callback(env: Any) -> None:
    if env.iteration == 2:
        failpoints.hit("train.during")


def train(
    train_frame: pl.DataFrame,
    settings: Settings,
    params: dict[str, Any] | None = None,
    *,
    features: list[dict[str, Any]] | None = None,
    budget_seconds: float | None = None,
    budget_source: str = "the training time budget",
    weights: np.ndarray | None = None,
) -> TrainedModel:
    """Train LightGBM on rows given in canonical order, with the configured (or given) parameters.

    `features` fixes the feature list and category codes (a card's, when reproducing); `budget_seconds`
    stops training with TrainingBudgetExceeded once spent, naming `budget_source` (the setting that set it); `weights` are per-row sample weights.
    """
    import lightgbm as lgb

    params, features, x, y = training_input(train_frame, settings, params, features)
    started = time.perf_counter()
    dataset = lgb.Dataset(
        x,
        label=y,
        weight=weights,
        feature_name=[f["name"] for f in features],
        categorical_feature=categorical_names(features),
        free_raw_data=True,
        params=params,
    )
    callbacks = []
    if failpoints.armed("train.during"):
        callbacks.append(_failpoint_callback)
    if budget_seconds is not None:
        callbacks.append(budget_callback(budget_seconds, started, num_rounds(params), budget_source))
    booster = lgb.train(params, dataset, callbacks=callbacks)
    return TrainedModel(booster, features, params, time.perf_counter() - started)


def next_version(models_dir: Path, known: list[str]) -> str:
    """The next version name, above every known version and every folder already in the models folder."""
    numbers = [int(v[1:]) for v in known if VERSION_PATTERN.fullmatch(v)]
    if models_dir.is_dir():
        numbers += [int(p.name[1:]) for p in models_dir.iterdir() if VERSION_PATTERN.fullmatch(p.name)]
    return f"v{(max(numbers) + 1) if numbers else 1:04d}"


def save(
    model: TrainedModel, models_dir: Path, version: str, card_fields: dict[str, Any]
) -> tuple[Path, dict]:
    """Write model.txt and card.json into models_dir/version atomically; return the folder and the card."""
    import lightgbm as lgb

    target = model_dir(models_dir, version)
    if target.exists():
        raise RegistryError(f"model folder {target} already exists")
    _remove_dead_temp_folders(models_dir)
    tmp = models_dir / f"{_TMP_PREFIX}{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    text = model.booster.model_to_string()
    (tmp / MODEL_FILE).write_text(text, encoding="utf-8")
    failpoints.hit("model.during_save")
    card = {
        "version": version,
        "format": "lightgbm-text",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "lightgbm_version": lgb.__version__,
        "engine": model.engine,
        "params": model.params,
        "seed": model.params.get("seed"),
        "num_threads": model.params.get("num_threads"),
        "features": model.features,
        "num_trees": model.booster.num_trees(),
        "training_seconds": round(model.seconds, 3),
        "model_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        **({model.engine: model.engine_info} if model.engine_info else {}),
        **card_fields,
    }
    (tmp / CARD_FILE).write_text(json.dumps(card, indent=2, default=str), encoding="utf-8")
    for f in (tmp / MODEL_FILE, tmp / CARD_FILE):
        with f.open("rb") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, target)
    return target, card


_TMP_PREFIX = ".tmp-"


def _remove_dead_temp_folders(models_dir: Path) -> None:
    """Remove the temporary folders of saves whose process died before renaming them (killed): they
    never became a version, and nothing names them."""
    if not models_dir.is_dir():
        return
    for path in models_dir.iterdir():
        pid = path.name.rpartition("-")[2]
        if not path.name.startswith(_TMP_PREFIX) or not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # alive, another user's


def model_dir(models_dir: Path, version: str) -> Path:
    """The folder of a version, refusing names and paths that would leave the models folder."""
    if not isinstance(version, str) or not VERSION_PATTERN.fullmatch(version):
        raise RegistryError(f"{version!r} is not a model version (expected v0001, v0002, ...)")
    root = models_dir.resolve()
    path = (root / version).resolve()
    if path.parent != root:
        raise RegistryError(f"model {version} resolves outside the models folder {root}")
    return path


@dataclass
class LoadedModel:
    """A model read back from disk, ready to score polars frames."""

    booster: Any
    card: dict[str, Any]
    path: Path

    @property
    def version(self) -> str:
        return str(self.card.get("version") or self.path.parent.name)

    @property
    def features(self) -> list[dict[str, Any]]:
        return self.card["features"]

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        threads = int(self.card.get("num_threads") or 0) or 0
        return np.asarray(
            self.booster.predict(encode(frame, self.features), num_threads=threads), dtype=np.float64
        )


def load(model_path: Path, *, features_from: Settings | None = None) -> LoadedModel:
    """Load a LightGBM text model and the card beside it (verifying the file's hash).

    Without a card, the features and category codes are taken from `features_from` (the config),
    which must then name a category list for every categorical feature.
    """
    import lightgbm as lgb

    path = Path(model_path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise RegistryError(f"model file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    card_path = path.with_name(CARD_FILE)
    if card_path.is_file():
        card = json.loads(card_path.read_text(encoding="utf-8"))
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if card.get("model_sha256") and card["model_sha256"] != digest:
            raise RegistryError(
                f"model file {path} does not match the SHA-256 in its card (incomplete or altered)"
            )
    elif features_from is not None:
        missing = [f.name for f in features_from.features if f.kind == "categorical" and not f.categories]
        if missing:
            raise RegistryError(
                f"{path} has no card.json, and the config lists no categories for {missing[0]!r}"
            )
        card = {
            "features": [
                {
                    "name": f.name,
                    "kind": f.kind,
                    **({"categories": list(f.categories or ())} if f.kind == "categorical" else {}),
                }
                for f in features_from.features
            ]
        }
    else:
        raise RegistryError(f"{path} has no card.json beside it")
    try:
        booster = lgb.Booster(model_str=text)
    except Exception as e:  # LightGBM raises its own error type for malformed text
        raise RegistryError(f"{path} is not a LightGBM text model: {str(e).splitlines()[0][:160]}") from None
    names = booster.feature_name()
    want = [f["name"] for f in card["features"]]
    if names != want:
        raise RegistryError(f"{path}: model features {names} differ from its card's {want}")
    return LoadedModel(booster, card, path)


def load_version(models_dir: Path, version: str) -> LoadedModel:
    """Load a registry version, from inside the models folder only."""
    folder = model_dir(models_dir, version)
    if not (folder / MODEL_FILE).is_file() or not (folder / CARD_FILE).is_file():
        raise RegistryError(f"model {version} is incomplete or missing in {folder}")
    for name in (MODEL_FILE, CARD_FILE):
        if (folder / name).resolve().parent != folder:
            raise RegistryError(f"model {version}: {name} is a link leading outside {folder}; refused")
    return load(folder)
