"""Binary classification metrics on numpy arrays (labels 0/1, scores = predicted probabilities)."""

from __future__ import annotations

import math

import numpy as np

from ct_assets.config import LOWER_IS_BETTER

EPS = 1e-15


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (ties counted half); NaN when only one class is present.

    The share of (positive, negative) pairs ordered right: each class sorted once, then for every
    positive the negatives below it (and tied with it) by binary search with sorted queries. The counts
    are whole numbers, so the result is the pairwise count exactly, up to the final division."""
    y = np.asarray(y).astype(bool)
    p = np.asarray(p, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    pos, neg = np.sort(p[y]), np.sort(p[~y])
    below = np.searchsorted(neg, pos, side="left")
    tied = np.searchsorted(neg, pos, side="right") - below
    return float((int(below.sum()) + 0.5 * int(tied.sum())) / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    if len(y) == 0:
        return math.nan
    q = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2)) if len(y) else math.nan


def at_threshold(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of the decision p >= threshold."""
    pred = p >= threshold
    tp = float(np.sum(pred & (y == 1)))
    fp = float(np.sum(pred & (y == 0)))
    fn = float(np.sum(~pred & (y == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def metric_value(name: str, y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """One metric by its config name (what `all_metrics(...)[name]` gives, without computing the others)."""
    if name == "roc_auc":
        return roc_auc(y, p)
    if name == "log_loss":
        return log_loss(y, p)
    if name == "brier":
        return brier(y, p)
    return at_threshold(y, p, threshold)[name]


def all_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Every reported metric, by its config name."""
    return {
        "roc_auc": roc_auc(y, p),
        "log_loss": log_loss(y, p),
        "brier": brier(y, p),
        **at_threshold(y, p, threshold),
    }


def improvement(metric: str, challenger: float, champion: float) -> float:
    """How much better the challenger is (positive = better), whatever the metric's direction."""
    diff = challenger - champion
    return -diff if metric in LOWER_IS_BETTER else diff


def meets_floor(metric: str, value: float, floor: float) -> bool:
    if math.isnan(value):
        return False
    return value <= floor if metric in LOWER_IS_BETTER else value >= floor
