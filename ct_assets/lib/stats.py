"""Uncertainty of paired metric differences: DeLong for ROC AUC, a vectorised paired bootstrap otherwise.

Both models are scored on the same rows, so their metrics are correlated; the interval of the
difference uses that pairing (much narrower than two independent intervals).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

BOOTSTRAP_SEED = 20240611


@dataclass(frozen=True)
class Interval:
    """A paired difference (challenger minus champion, in the metric's own direction) and its
    two-sided interval at `confidence`."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str

    @property
    def lower_is_finite(self) -> bool:
        return math.isfinite(self.low)


def _midrank_components(scores: np.ndarray, n_pos: int) -> tuple[np.ndarray, np.ndarray, float]:
    """DeLong's structural components for one model (positives first in `scores`)."""
    pos, neg = scores[:n_pos], scores[n_pos:]
    n_neg = len(neg)
    r_all = rankdata(scores)
    r_pos = rankdata(pos)
    r_neg = rankdata(neg)
    v10 = (r_all[:n_pos] - r_pos) / n_neg  # for each positive: share of negatives below it
    v01 = 1.0 - (r_all[n_pos:] - r_neg) / n_pos  # for each negative: share of positives above it
    auc = float(v10.mean())
    return v10, v01, auc


def delong_difference(
    y: np.ndarray, challenger: np.ndarray, champion: np.ndarray, confidence: float
) -> Interval:
    """AUC(challenger) - AUC(champion) with DeLong's paired variance (O(n log n))."""
    y = np.asarray(y).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos < 2 or n_neg < 2:
        return Interval(math.nan, math.nan, math.nan, confidence, "delong")
    order = np.concatenate([np.flatnonzero(y), np.flatnonzero(~y)])
    a10, a01, auc_a = _midrank_components(np.asarray(challenger)[order], n_pos)
    b10, b01, auc_b = _midrank_components(np.asarray(champion)[order], n_pos)
    s10 = np.cov(np.vstack([a10, b10]))
    s01 = np.cov(np.vstack([a01, b01]))
    cov = s10 / n_pos + s01 / n_neg
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    diff = auc_a - auc_b
    half = float(norm.ppf(0.5 + confidence / 2)) * math.sqrt(max(var, 0.0))
    return Interval(diff, diff - half, diff + half, confidence, "delong")


def bootstrap_difference(
    y: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    metric: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    confidence: float,
    *,
    higher_is_better: bool,
    resamples: int = 400,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """Paired percentile bootstrap of a metric difference, vectorised over resamples.

    `metric(y, p, weights)` takes row weights of shape (resamples, n) (resample counts) and returns one
    value per resample; the difference is oriented so that positive means the challenger is better.
    """
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    if n < 2:
        return Interval(math.nan, math.nan, math.nan, confidence, "bootstrap")
    sign = 1.0 if higher_is_better else -1.0
    ones = np.ones((1, n))
    estimate = float(sign * (metric(y, challenger, ones)[0] - metric(y, champion, ones)[0]))
    rng = np.random.default_rng(seed)
    # Resample counts per row (multinomial = bootstrap with replacement), in chunks to bound memory.
    diffs = []
    chunk = max(1, min(resamples, 4_000_000 // max(n, 1)))
    done = 0
    while done < resamples:
        k = min(chunk, resamples - done)
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=k).astype(np.float64)
        diffs.append(sign * (metric(y, challenger, w) - metric(y, champion, w)))
        done += k
    d = np.concatenate(diffs)
    alpha = 1 - confidence
    low, high = np.quantile(d, [alpha / 2, 1 - alpha / 2])
    return Interval(estimate, float(low), float(high), confidence, "bootstrap")


def weighted_log_loss(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-15, 1 - 1e-15)
    per_row = -(y * np.log(q) + (1 - y) * np.log(1 - q))
    return (w @ per_row) / w.sum(axis=1)


def weighted_brier(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (w @ ((p - y) ** 2)) / w.sum(axis=1)


def weighted_threshold_metric(
    name: str, threshold: float
) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """Precision, recall or F1 at the operating threshold, per resample."""

    def metric(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
        pred = (p >= threshold).astype(np.float64)
        tp = w @ (pred * y)
        fp = w @ (pred * (1 - y))
        fn = w @ ((1 - pred) * y)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        return {"precision": precision, "recall": recall, "f1": f1}[name]

    return metric


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    if len(y) == 0:
        return math.nan
    idx = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(idx, minlength=bins)
    sum_p = np.bincount(idx, weights=p, minlength=bins)
    sum_y = np.bincount(idx, weights=y, minlength=bins)
    mask = counts > 0
    return float(np.sum(np.abs(sum_p[mask] - sum_y[mask])) / len(y))


def weighted_calibration_error(y: np.ndarray, p: np.ndarray, w: np.ndarray, bins: int = 10) -> np.ndarray:
    idx = np.minimum((p * bins).astype(int), bins - 1)
    onehot = np.zeros((len(p), bins))
    onehot[np.arange(len(p)), idx] = 1.0
    gap = onehot * (p - y)[:, None]  # per row, in its bin
    per_bin = w @ gap  # (resamples, bins)
    return np.abs(per_bin).sum(axis=1) / w.sum(axis=1)
