"""Each model's scores on the rows it was last evaluated on, kept so the next validation need not score
them again.

Every validation scores the champion on the golden set and the recent holdout. The golden set is
frozen, and from one cycle to the next the holdout mostly moves by the rows landed since, so the
champion (the previous cycle's challenger, or a champion that blocked a challenger) was already
scored on nearly all of these rows. Scores are kept per model in `<state>/scores/<version>.parquet`
(Parquet, never pickle): the row's content hash and the score. A row's hash covers every stored
column, so a row with the same hash has the same features and gets the same score from the same
model; the file also carries the model file's SHA-256 and is ignored unless it matches the model
being scored. Rows not found are scored as usual. Only the current champion's and challenger's files
are kept, each with exactly the rows of its last validation, so the folder stays small.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ct_assets.core.modeling import model as lgbm

FOLDER = "scores"
HASH_COLUMN = "_row_hash"


@dataclass
class Scored:
    """A model's scores on a frame and how many of them came from its cache."""

    scores: np.ndarray
    reused: int


def cache_path(state_dir: Path, version: str) -> Path:
    lgbm.model_dir(state_dir, version)  # a version name, never a path
    return state_dir / FOLDER / f"{version}.parquet"


def _load(path: Path, model_sha256: str) -> pl.DataFrame | None:
    """The cached (row hash, score) pairs of this exact model file, or None (missing, stale, unreadable)."""
    if not model_sha256 or not path.is_file():
        return None
    try:
        cached = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError):
        return None  # a torn or foreign file: score from scratch, it is rewritten after
    if cached.columns != [HASH_COLUMN, "score", "model_sha256"] or cached.height == 0:
        return None
    if cached["model_sha256"][0] != model_sha256:
        return None
    return cached.select(HASH_COLUMN, "score").unique(HASH_COLUMN, keep="first")


def score(model: lgbm.LoadedModel, frame: pl.DataFrame, state_dir: Path) -> Scored:
    """The model's scores on `frame` (which carries HASH_COLUMN), reusing cached scores of the same rows."""
    cached = _load(cache_path(state_dir, model.version), str(model.card.get("model_sha256") or ""))
    if cached is None:
        return Scored(model.predict(frame), 0)
    found = frame.select(HASH_COLUMN).join(cached, on=HASH_COLUMN, how="left", maintain_order="left")["score"]
    missing = found.is_null().to_numpy()
    scores = found.fill_null(np.nan).to_numpy().astype(np.float64, copy=True)
    if missing.any():
        scores[missing] = model.predict(frame.filter(pl.Series(missing)))
    return Scored(scores, int((~missing).sum()))


def save(
    state_dir: Path, model: lgbm.LoadedModel, hashes: list[np.ndarray], scores: list[np.ndarray]
) -> bool:
    """Keep exactly these scores of the model (the rows of its latest validation), atomically. A cache
    that cannot be written (disk full, permissions) is skipped, never a failed validation: returns False."""
    sha = str(model.card.get("model_sha256") or "")
    if not sha:
        return False
    path = cache_path(state_dir, model.version)
    frame = pl.DataFrame(
        {
            HASH_COLUMN: pl.Series(np.concatenate(hashes), dtype=pl.UInt64),
            "score": pl.Series(np.concatenate(scores), dtype=pl.Float64),
        }
    ).with_columns(model_sha256=pl.lit(sha))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.write_parquet(tmp)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False
    return True


def prune(state_dir: Path, keep: set[str]) -> None:
    """Delete the cached scores of every model but `keep` (the champion and the latest challenger)."""
    folder = state_dir / FOLDER
    if not folder.is_dir():
        return
    for path in folder.iterdir():  # other models' files, and temporary files a killed run left
        if path.is_file() and (path.suffix != ".parquet" or path.stem not in keep):
            with contextlib.suppress(OSError):
                path.unlink()
