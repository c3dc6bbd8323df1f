"""Reproduce a registered model: rebuild its training rows from the warehouse, retrain it with its
recorded parameters, seed and threads, and compare the model file byte for byte."""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass

from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.datasets.training import load_dataset, read_split
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.modeling import shared
from ct_assets.errors import DataError, RegistryError
from ct_assets.store.warehouse import connect_reader


@dataclass(frozen=True)
class Reproduction:
    version: str
    identical: bool
    reason: str
    data_hash: str
    rows: int
    seconds: float


def reproduce(settings: Settings, version: str) -> Reproduction:
    """Retrain `version` from the warehouse and say whether the model file comes out byte-identical."""
    stored = shared.load(settings, version)
    started = time.perf_counter()
    with connect_reader(settings, wait_seconds=60) as con:
        rec = registry.model(con, version)
        if rec is None:
            raise RegistryError(f"{version} is not a registered model")
        ds = load_dataset(con, rec.dataset_hash)
        try:
            # Every value is hashed again: a row edited in place since training shows up here.
            train = read_split(con, settings, ds, "train", recompute_hashes=True)
        except DataError as e:
            return Reproduction(
                version, False, f"data hash mismatch: {e}", rec.dataset_hash, 0, time.perf_counter() - started
            )
    card = stored.card
    params = dict(card["params"])
    weights = lgbm.sample_weights(train, settings.columns.exploration, card.get("exploration_weight"))
    retrained = lgbm.train(train, settings, params=params, features=card["features"], weights=weights)
    text = retrained.booster.model_to_string()
    original = (lgbm.model_dir(settings.paths.models, version) / lgbm.MODEL_FILE).read_text(encoding="utf-8")
    seconds = time.perf_counter() - started
    if text == original:
        return Reproduction(
            version,
            True,
            f"byte-identical model.txt ({len(text)} bytes) from {train.height} rows "
            f"with data hash {rec.dataset_hash}",
            rec.dataset_hash,
            train.height,
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
        train.height,
        seconds,
    )
