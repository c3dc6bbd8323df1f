"""Metrics: ROC AUC against the pairwise count (ties included) and its edge cases, log loss and Brier
score, F1, precision and recall at a threshold, and which direction is better for each."""

import itertools
import math

import numpy as np
import pytest

from ct_assets.config import METRICS
from ct_assets.core.modeling import metrics


def brute_force_auc(y: np.ndarray, p: np.ndarray) -> float:
    pos = [s for s, t in zip(p, y, strict=True) if t == 1]
    neg = [s for s, t in zip(p, y, strict=True) if t == 0]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_equals_the_pairwise_count(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(60) < 0.4).astype(int)
    p = np.round(rng.random(60) * 0.5 + 0.3 * y, 1)  # coarse: many ties
    assert metrics.roc_auc(y, p) == pytest.approx(brute_force_auc(y, p), abs=1e-12)


def test_roc_auc_edge_cases() -> None:
    y = np.array([0, 0, 1, 1])
    assert metrics.roc_auc(y, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert metrics.roc_auc(y, np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert metrics.roc_auc(y, np.full(4, 0.5)) == 0.5
    assert math.isnan(metrics.roc_auc(np.ones(4, dtype=int), np.array([0.1, 0.2, 0.3, 0.4])))
    assert math.isnan(metrics.roc_auc(np.zeros(4, dtype=int), np.array([0.1, 0.2, 0.3, 0.4])))


def test_log_loss_and_brier() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.6, 0.5])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.5)) / 4
    assert metrics.log_loss(y, p) == pytest.approx(expected)
    assert metrics.brier(y, p) == pytest.approx((0.01 + 0.04 + 0.16 + 0.25) / 4)
    # a confident mistake costs a lot, but stays finite
    worst = metrics.log_loss(np.array([1]), np.array([0.0]))
    assert math.isfinite(worst)
    assert worst == pytest.approx(-math.log(metrics.EPS))
    assert math.isnan(metrics.log_loss(np.array([]), np.array([])))
    assert math.isnan(metrics.brier(np.array([]), np.array([])))


def test_f1_precision_recall_at_threshold() -> None:
    y = np.array([1, 1, 0, 0, 1])
    p = np.array([0.9, 0.4, 0.6, 0.1, 0.5])  # at 0.5: tp = 2 (0.9, 0.5 on the threshold), fp = 1, fn = 1
    assert metrics.at_threshold(y, p, 0.5) == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3}
    )
    # at 0.65: tp = 1, fp = 0, fn = 2
    assert metrics.at_threshold(y, p, 0.65) == pytest.approx({"precision": 1.0, "recall": 1 / 3, "f1": 0.5})
    assert metrics.at_threshold(y, p, 0.95) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert set(metrics.all_metrics(y, p, 0.5)) == set(METRICS)


def test_metric_directions() -> None:
    assert metrics.improvement("roc_auc", 0.8, 0.7) == pytest.approx(0.1)
    assert metrics.improvement("log_loss", 0.3, 0.4) == pytest.approx(0.1)
    assert metrics.improvement("brier", 0.3, 0.2) == pytest.approx(-0.1)
    assert metrics.meets_floor("roc_auc", 0.7, 0.6)
    assert not metrics.meets_floor("roc_auc", 0.5, 0.6)
    assert metrics.meets_floor("log_loss", 0.5, 0.6)
    assert not metrics.meets_floor("log_loss", 0.7, 0.6)
    assert not metrics.meets_floor("roc_auc", math.nan, 0.0)
