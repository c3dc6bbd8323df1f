"""How the champion is doing on fresh labels (decay) and how far the features moved (drift).

At training time a small reference profile of every feature is stored in the model card (decile bin
edges and shares for numerics, category shares for categoricals). Drift is the population stability
index (PSI) of recent rows against that profile: an effect size, so that a large sample does not turn
a trivial shift into an alarm; a minimum sample size keeps small samples from flagging noise.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from ct_assets.config import Settings
from ct_assets.core.modeling.metrics import all_metrics

NULL_BIN = "(null)"
OTHER_BIN = "(other)"
EPS = 1e-4  # share floor in PSI, so an empty bin does not make it infinite


PROFILE_MAX_ROWS = 250_000  # the reference profile reads at most this many training rows


def profile_rows(frame: pl.DataFrame, max_rows: int = PROFILE_MAX_ROWS) -> pl.DataFrame:
    """The rows a profile is computed on: all of them up to `max_rows`, else every k-th row (k the
    smallest stride that fits), a deterministic sample spread evenly over the frame's order. Decile
    edges from 250,000 rows sit within about 0.1 percentile point of the full set's, far below what
    moves a PSI; the full sort of millions of rows is what it saves."""
    stride = profile_stride(frame.height, max_rows)
    return frame if stride == 1 else frame.gather_every(stride)


def profile_stride(rows: int, max_rows: int = PROFILE_MAX_ROWS) -> int:
    """Every how many rows `profile_rows` keeps one (rows 0, k, 2k, ... of the frame's order)."""
    return 1 if rows <= max_rows else -(-rows // max_rows)


def feature_profile(frame: pl.DataFrame, settings: Settings) -> dict[str, dict[str, Any]]:
    """Reference distribution of every feature: bin edges and shares (numeric), or shares (categorical),
    on the rows `profile_rows` picks."""
    out: dict[str, dict[str, Any]] = {}
    frame = profile_rows(frame)
    n = max(frame.height, 1)
    for f in settings.features:
        col = frame[f.name]
        if f.kind == "numeric":
            arr = col.cast(pl.Float64).to_numpy()
            finite = np.sort(arr[np.isfinite(arr)])  # one sort gives the deciles and the bin counts
            edges = sorted({float(x) for x in _deciles_of_sorted(finite)}) if len(finite) else []
            out[f.name] = {
                "kind": "numeric",
                "edges": edges,
                "shares": _shares_of_sorted(finite, edges, len(arr)),
            }
        else:
            counts = col.cast(pl.String).fill_null(NULL_BIN).value_counts()
            out[f.name] = {
                "kind": "categorical",
                "shares": {str(k): int(v) / n for k, v in counts.iter_rows()},
            }
    return out


def _deciles_of_sorted(values: np.ndarray) -> np.ndarray:
    """The 10th..90th percentiles of sorted values, as np.quantile's default (linear) method gives them,
    read off the sorted array instead of selecting them again."""
    pos = np.linspace(0.1, 0.9, 9) * (len(values) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(values) - 1)
    return values[lo] + (pos - lo) * (values[hi] - values[lo])


def _numeric_shares(col: pl.Series, edges: list[float]) -> list[float]:
    """Shares of rows in each bin (-inf, e1], (e1, e2], ..., (ek, inf), then the null/NaN bin."""
    arr = col.cast(pl.Float64).to_numpy()
    return _shares_of_sorted(np.sort(arr[np.isfinite(arr)]), edges, len(arr))


def _shares_of_sorted(finite: np.ndarray, edges: list[float], rows: int) -> list[float]:
    """_numeric_shares from the sorted finite values and the row count (the rest are null or NaN)."""
    n = max(rows, 1)
    # Rows at or below each edge, by binary search of the few edges in the sorted values.
    at_or_below = np.searchsorted(finite, np.asarray(edges, dtype=np.float64), side="right")
    counts = np.diff(np.concatenate([[0], at_or_below, [len(finite)]]))
    return [float(c) / n for c in counts] + [float(rows - len(finite)) / n]


def psi(expected: list[float] | np.ndarray, actual: list[float] | np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), EPS)
    a = np.maximum(np.asarray(actual, dtype=np.float64), EPS)
    return float(np.sum((a - e) * np.log(a / e)))


def _scaled_without(shares: dict[str, float], key: str) -> dict[str, float]:
    """Category shares without `key`, scaled to sum to one."""
    rest = {k: v for k, v in shares.items() if k != key}
    return dict(zip(rest, _scaled(list(rest.values())), strict=True))


def _scaled(shares: list[float]) -> list[float]:
    """Shares scaled to sum to one (left as they are when they sum to zero)."""
    total = sum(shares)
    return [v / total for v in shares] if total > 0 else shares


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    rows: int
    drifted: bool


def _without_null_bin(shares: list[float]) -> list[float]:
    """Numeric shares with the null/NaN bin (the last) dropped and the rest scaled to sum to one."""
    return _scaled(shares[:-1])


def drift(
    profile: dict[str, dict[str, Any]],
    recent: pl.DataFrame,
    settings: Settings,
    added_later: Collection[str] = (),
) -> list[FeatureDrift]:
    """PSI of every profiled feature in `recent` against the champion's training profile.

    A feature in `added_later` (a column the warehouse gained after it held rows: store.evolution) is
    compared on its known values only: the rows stored before it existed hold nulls in it, so its share
    of nulls in the training profile says when the column was added, not how the data moved."""
    r = settings.retrain
    n = recent.height
    out = []
    for name, ref in profile.items():
        if name not in recent.columns:
            continue
        if ref["kind"] == "numeric":
            expected, actual = ref["shares"], _numeric_shares(recent[name], ref["edges"])
            if name in added_later:
                expected, actual = _without_null_bin(expected), _without_null_bin(actual)
            value = psi(expected, actual)
        else:
            known = dict(ref["shares"])
            counts = recent[name].cast(pl.String).fill_null(NULL_BIN).value_counts()
            now = {str(k): int(v) / max(n, 1) for k, v in counts.iter_rows()}
            if name in added_later:
                known, now = _scaled_without(known, NULL_BIN), _scaled_without(now, NULL_BIN)
            bins = sorted(set(known) | set(now))
            value = psi([known.get(b, 0.0) for b in bins], [now.get(b, 0.0) for b in bins])
        out.append(FeatureDrift(name, value, n, n >= r.drift_min_rows and value >= r.drift_psi))
    out.sort(key=lambda d: -d.psi)
    return out


@dataclass(frozen=True)
class Decay:
    """The champion's primary metric on fresh labels, against its floor and its own validation figure."""

    value: float
    rows: int
    reference: float | None  # the champion's holdout figure when it was validated
    decayed: bool
    reason: str


def decay(settings: Settings, y: np.ndarray, scores: np.ndarray, reference: float | None) -> Decay:
    r = settings.retrain
    metric = settings.primary_metric
    rows = len(y)
    value = all_metrics(y, scores, settings.decision_threshold)[metric] if rows else math.nan
    lower_better = metric in ("log_loss", "brier")
    if rows < r.decay_min_rows or math.isnan(value):
        return Decay(
            value,
            rows,
            reference,
            False,
            f"{rows} fresh labelled rows; decay is judged from {r.decay_min_rows}",
        )
    floor_hit = r.decay_floor > 0 and (value > r.decay_floor if lower_better else value < r.decay_floor)
    margin_hit = reference is not None and (
        value > reference + r.decay_margin if lower_better else value < reference - r.decay_margin
    )
    if floor_hit:
        return Decay(
            value,
            rows,
            reference,
            True,
            f"{metric} {value:.4f} on {rows} fresh labels is past the floor {r.decay_floor}",
        )
    if margin_hit:
        return Decay(
            value,
            rows,
            reference,
            True,
            f"{metric} {value:.4f} on {rows} fresh labels is worse than its validation figure "
            f"{reference:.4f} by more than {r.decay_margin}",
        )
    ref_text = f"{reference:.4f}" if reference is not None else "n/a"
    return Decay(
        value,
        rows,
        reference,
        False,
        f"{metric} {value:.4f} on {rows} fresh labels (validation {ref_text}, margin {r.decay_margin})",
    )
