"""Reproduce a registered model: rebuild its training rows from the warehouse, retrain it with its
recorded parameters, seed and threads, and compare the model file byte for byte.

A model trained on Dask (card engine "dask") is retrained on Dask, where two fits of the same rows need
not be identical: it reproduces when its AUC on the golden set is within DASK_AUC_TOLERANCE of the
original's; the largest score difference is reported beside it."""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.datasets.golden import read_golden
from ct_assets.core.datasets.training import load_dataset, read_split
from ct_assets.core.modeling import dask_shares, dask_training, shared
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.modeling.metrics import roc_auc
from ct_assets.errors import DataError, RegistryError
from ct_assets.store.warehouse import connect_reader

DASK_AUC_TOLERANCE = 0.005


@dataclass(frozen=True)
class Reproduction:
    version: str
    identical: bool  # the model file came out byte-identical
    reason: str
    data_hash: str
    rows: int
    seconds: float
    within_tolerance: bool = False  # a Dask-trained model: golden AUC within DASK_AUC_TOLERANCE

    @property
    def reproducible(self) -> bool:
        return self.identical or self.within_tolerance


def reproduce(settings: Settings, version: str) -> Reproduction:
    """Retrain `version` from the warehouse and say whether the model file comes out byte-identical."""
    stored = shared.load(settings, version)
    started = time.perf_counter()
    dask = stored.card.get("engine") == "dask"
    with connect_reader(settings, wait_seconds=60) as con:
        rec = registry.model(con, version)
        if rec is None:
            raise RegistryError(f"{version} is not a registered model")
        ds = load_dataset(con, rec.dataset_hash)
        golden = None
        if dask:
            if not stored.card.get("golden_hash"):
                raise DataError(
                    f"{version} was trained on Dask and its card names no golden set to compare on"
                )
            golden = read_golden(con, settings, stored.card["golden_hash"])
        train = None
        if not (dask and settings.cluster is not None):
            try:
                # Every value is hashed again: a row edited in place since training shows up here.
                train = read_split(con, settings, ds, "train", recompute_hashes=True)
            except DataError as e:
                return mismatch(version, e, rec.dataset_hash, started)
    card = stored.card
    params = dict(card["params"])
    if train is None:  # DuckLake: each worker reads (and hashes again) its own share
        try:
            retrained = dask_shares.train_on_shares(
                settings,
                ds,
                params,
                features=card["features"],
                exploration_weight=card.get("exploration_weight"),
                recompute_hashes=True,
            ).trained
        except DataError as e:
            return mismatch(version, e, rec.dataset_hash, started)
        rows = ds.n_train
    else:
        weights = lgbm.sample_weights(train, settings.columns.exploration, card.get("exploration_weight"))
        trainer = dask_training.train if dask else lgbm.train
        retrained = trainer(train, settings, params=params, features=card["features"], weights=weights)
        rows = train.height
    if golden is not None:
        again = lgbm.LoadedModel(retrained.booster, card, stored.path)
        return within_tolerance(settings, stored, again, golden, rec.dataset_hash, rows, started)
    text = retrained.booster.model_to_string()
    original = (lgbm.model_dir(settings.paths.models, version) / lgbm.MODEL_FILE).read_text(encoding="utf-8")
    seconds = time.perf_counter() - started
    if text == original:
        return Reproduction(
            version,
            True,
            f"byte-identical model.txt ({len(text)} bytes) from {rows} rows "
            f"with data hash {rec.dataset_hash}",
            rec.dataset_hash,
            rows,
            seconds,
        )
    diff = next(
        (
            line
            for line in difflib.unified_diff(original.splitlines(), text.splitlines(), lineterm="", n=0)
            if line.startswith(("-", "+")) and not line.startswith(("---", "+++"))
        ),
        "",
    )
    return Reproduction(
        version,
        False,
        f"the data matches (hash {rec.dataset_hash}) but the retrained model "
        f"differs; first difference: {diff[:160]}",
        rec.dataset_hash,
        rows,
        seconds,
    )


def mismatch(version: str, error: DataError, data_hash: str, started: float) -> Reproduction:
    """Not reproducible: the rows read are not the data set's recorded ones."""
    return Reproduction(
        version, False, f"data hash mismatch: {error}", data_hash, 0, time.perf_counter() - started
    )


def within_tolerance(
    settings: Settings,
    original: lgbm.LoadedModel,
    again: lgbm.LoadedModel,
    golden: pl.DataFrame,
    data_hash: str,
    rows: int,
    started: float,
) -> Reproduction:
    """A Dask-trained model against its retraining, on the labelled rows of the golden set it was
    validated with: AUC of each, their difference, and the largest score difference."""
    golden = golden.filter(pl.col(settings.columns.label).is_not_null())
    if golden.height == 0:
        raise DataError(f"{original.version}: its golden set has no labelled rows to compare on")
    y = lgbm.labels(golden, settings)
    first, second = original.predict(golden), again.predict(golden)
    auc_first, auc_second = roc_auc(y, first), roc_auc(y, second)
    gap = abs(auc_second - auc_first)
    largest = float(np.max(np.abs(second - first)))
    ok = gap <= DASK_AUC_TOLERANCE
    reason = (
        f"{'within' if ok else 'NOT within'} tolerance (trained on Dask): golden AUC {auc_second:.4f} "
        f"retrained vs {auc_first:.4f} original, difference {gap:.4f} (tolerance {DASK_AUC_TOLERANCE}); "
        f"largest score difference {largest:.4f} over {golden.height} golden rows; "
        f"from {rows} rows with data hash {data_hash}"
    )
    return Reproduction(
        original.version, False, reason, data_hash, rows, time.perf_counter() - started, within_tolerance=ok
    )
