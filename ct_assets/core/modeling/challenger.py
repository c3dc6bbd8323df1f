"""Training a challenger from a recorded training data set: read the train rows in canonical order,
train LightGBM within its time budget, profile the features, save model.txt and card.json, register.

What the `challenger_model` asset runs. At most one training runs on a warehouse at a time: the
training lock (an OS file lock beside the warehouse) queues a second one behind the first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ct_assets.common import failpoints
from ct_assets.common.clock import utc_now
from ct_assets.common.stopwatch import Stopwatch
from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.datasets.training import DatasetInfo, read_split
from ct_assets.core.modeling import dask_shares, dask_training, shared
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.monitoring import signals as monitoring
from ct_assets.core.triggers.snapshot import writer_keeping_snapshot
from ct_assets.store.warehouse import connect_writer, named_lock


@contextlib.contextmanager
def training_lock(s: Settings) -> Iterator[None]:
    """Held for a whole training: a second training on this warehouse waits here for the first."""
    with named_lock(s, "train", s.guardrails.max_run_seconds, "the training lock"):
        yield


def training_budget(s: Settings, run_seconds_left: float) -> tuple[float, str]:
    """LightGBM's time budget: [guardrails] max_training_seconds, or what is left of the run's budget
    when that is less; and where the figure comes from, for the error message."""
    budget = min(s.guardrails.max_training_seconds, run_seconds_left)
    if budget == s.guardrails.max_training_seconds:
        return budget, f"[guardrails] max_training_seconds = {s.guardrails.max_training_seconds:g}"
    return budget, f"what was left of [guardrails] max_run_seconds = {s.guardrails.max_run_seconds:g}"


@dataclass
class Challenger:
    """A trained, saved and registered challenger (or the champion itself, when nothing it was trained
    from has changed: then no model is trained and `reused` is True)."""

    version: str
    folder: Path
    card: dict[str, Any]
    booster: Any
    params: dict[str, Any]
    train_seconds: float
    seconds: dict[str, float] = field(default_factory=dict)
    reused: bool = False

    def importance(self) -> list[dict[str, Any]]:
        """Each feature's share of the total gain, largest first."""
        gains = self.booster.feature_importance(importance_type="gain")
        total = float(gains.sum()) or 1.0
        return sorted(
            (
                {"feature": n, "gain_share": round(float(g) / total, 4)}
                for n, g in zip(self.booster.feature_name(), gains, strict=True)
            ),
            key=lambda r: -r["gain_share"],
        )


def champion_if_unchanged(s: Settings, ds: DatasetInfo) -> Challenger | None:
    """The champion, when training now would only make its exact copy: the same data set (content
    hash), LightGBM parameters, training engine, features, exploration weight and code version."""
    with connect_writer(s) as con:
        champion = registry.champion(con)
        rec = registry.model(con, champion) if champion else None
    if rec is None or rec.dataset_hash != ds.dataset_hash or rec.params != dict(s.training):
        return None
    if rec.code_version != lgbm.code_version():
        return None
    loaded = shared.load(s, rec.version)
    weight = s.dataset.exploration_weight if s.columns.exploration else None
    if (
        [f["name"] for f in loaded.features] != s.feature_names
        or loaded.card.get("exploration_weight") != weight
        or loaded.card.get("engine", "lightgbm") != s.training_engine
    ):
        return None
    return Challenger(
        rec.version,
        loaded.path.parent,
        loaded.card,
        loaded.booster,
        rec.params,
        rec.train_seconds,
        reused=True,
    )


def trained_by_run(s: Settings, ds: DatasetInfo, run_id: str) -> Challenger | None:
    """The challenger this very run already trained and registered on `ds`: a step executed again in
    the same run (Dask re-runs a finished step whose result was on a lost worker) returns it instead
    of training and registering a second version."""
    with connect_writer(s) as con:
        rec = next(
            (m for m in registry.models(con) if m.run_id == run_id and m.dataset_hash == ds.dataset_hash),
            None,
        )
    if rec is None:
        return None
    loaded = shared.load(s, rec.version)  # on another worker: fetched from object storage
    return Challenger(
        rec.version, loaded.path.parent, loaded.card, loaded.booster, rec.params, rec.train_seconds
    )


def train_challenger(
    s: Settings, ds: DatasetInfo, *, run_id: str, budget_seconds: float, budget_source: str
) -> Challenger:
    """Train on the train split of `ds` (raises lgbm.TrainingBudgetExceeded past the budget), save the
    model and its card in a new version folder, and register it in the models table; or return the
    challenger this run already registered on `ds` (trained_by_run)."""
    again = trained_by_run(s, ds, run_id)
    if again is not None:
        return again
    watch = Stopwatch()
    trained, positives, profile = _train(s, ds, watch, budget_seconds, budget_source)
    flag = s.columns.exploration
    card_extra = {
        "data_hash": ds.dataset_hash,
        "train_hash": ds.train_hash,
        "holdout_hash": ds.holdout_hash,
        "golden_hash": ds.golden_hash,
        "label": {"column": s.columns.label, "classes": list(s.columns.label_classes)},
        "profile": profile,
        "exploration_weight": s.dataset.exploration_weight if flag else None,
        "rows": {
            "train": ds.n_train,
            "holdout": ds.n_holdout,
            "train_positives": positives,
            "late_labelled": ds.rows_late_labelled,
        },
        "watermark": {"max_batch_id": ds.max_batch_id, "newest_event_time": ds.newest_event_time.isoformat()},
        "run_id": run_id,
    }
    version, folder, card = _save_and_register(s, ds, trained, card_extra, run_id)
    watch.lap("save and register")
    return Challenger(version, folder, card, trained.booster, trained.params, trained.seconds, watch.seconds)


def _train(
    s: Settings, ds: DatasetInfo, watch: Stopwatch, budget_seconds: float, budget_source: str
) -> tuple[lgbm.TrainedModel, int, dict[str, Any]]:
    """The trained model, its positive training rows and the features' reference profile. On DuckLake
    with `[training] engine = "dask"`, each worker reads its own share of the rows (dask_shares);
    otherwise this process reads them all, then trains (in itself, or on Dask from its copy)."""
    weight = s.dataset.exploration_weight
    if s.training_engine == "dask" and s.cluster is not None:
        on_workers = dask_shares.train_on_shares(
            s, ds, exploration_weight=weight, budget_seconds=budget_seconds, budget_source=budget_source
        )
        watch.lap("read and train on the workers")
        profile = monitoring.feature_profile(on_workers.profile_rows, s)
        watch.lap("feature profile")
        return on_workers.trained, on_workers.positives, profile
    with connect_writer(s) as con:
        train_rows = read_split(con, s, ds, "train")
    watch.lap("read")
    weights = lgbm.sample_weights(train_rows, s.columns.exploration, weight)
    trainer = dask_training.train if s.training_engine == "dask" else lgbm.train
    trained = trainer(
        train_rows, s, budget_seconds=budget_seconds, budget_source=budget_source, weights=weights
    )
    watch.lap("train")
    positives = int(lgbm.labels(train_rows, s).sum())
    profile = monitoring.feature_profile(train_rows, s)
    del train_rows
    watch.lap("feature profile")
    return trained, positives, profile


def _save_and_register(
    s: Settings, ds: DatasetInfo, trained: lgbm.TrainedModel, card_extra: dict[str, Any], run_id: str
) -> tuple[str, Path, dict[str, Any]]:
    now = utc_now()
    with writer_keeping_snapshot(s) as con:
        version = lgbm.next_version(s.paths.models, registry.model_versions(con))
        folder, card = lgbm.save(trained, s.paths.models, version, card_extra)
        shared.publish(s, version)  # cluster mode: in object storage before the registry names it
        failpoints.hit("model.after_save")
        registry.record_model(
            con,
            registry.ModelRecord(
                version=version,
                created_at=now,
                dataset_hash=ds.dataset_hash,
                code_version=card["code_version"],
                params=trained.params,
                n_train=ds.n_train,
                n_holdout=ds.n_holdout,
                train_seconds=trained.seconds,
                watermark_batch_id=ds.max_batch_id,
                watermark_event_time=ds.newest_event_time,
                model_sha256=card["model_sha256"],
                run_id=run_id,
            ),
        )
    return version, folder, card
