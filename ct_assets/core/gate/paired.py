"""One paired comparison of the primary metric: the difference (challenger minus champion, positive is
better), its standard error, and the verdict at a one-sided confidence."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ct_assets.core.gate import stats
from ct_assets.core.gate.results import EvalSet
from ct_assets.core.modeling.metrics import improvement, metric_value


def z_value(one_sided_confidence: float) -> float:
    return float(stats.normal().ppf(one_sided_confidence))


@dataclass
class PairedDiff:
    """A paired difference and its standard error (None when it cannot be computed)."""

    challenger: float
    champion: float
    delta: float
    se: float | None


def paired_difference(
    metric: str,
    s: EvalSet,
    mask: np.ndarray | None,
    thr: float,
    boot: np.ndarray | None,
    ranked: stats.PairedScores | None,
) -> PairedDiff:
    """Point difference of the primary metric on the rows in `mask` (all rows when None) and its
    standard error: DeLong for ROC AUC (which gives both AUCs on the way; `ranked` holds this set's
    scores sorted once), the standard deviation of the bootstrap differences `boot` otherwise."""
    if metric == "roc_auc" and ranked is not None and (d := ranked.delong(mask)) is not None:
        delta = improvement(metric, d.challenger_auc, d.champion_auc)
        se = d.se if math.isfinite(d.se) else None
        return PairedDiff(d.challenger_auc, d.champion_auc, delta, None if math.isnan(delta) else se)
    assert s.champion is not None
    y, challenger, champion = (
        (s.y, s.challenger, s.champion) if mask is None else (s.y[mask], s.challenger[mask], s.champion[mask])
    )
    ch = metric_value(metric, y, challenger, thr)
    cp = metric_value(metric, y, champion, thr)
    delta = improvement(metric, ch, cp)
    if math.isnan(delta) or metric == "roc_auc":  # DeLong needs two rows of each class
        return PairedDiff(ch, cp, delta, None)
    se = float(np.nanstd(boot, ddof=1)) if boot is not None and len(boot) > 1 else None
    return PairedDiff(ch, cp, delta, se if se is not None and math.isfinite(se) else None)


def status_of(delta: float, low: float | None, tolerance: float, rule: str) -> str:
    bound = delta if rule == "point" or low is None else low
    # A tiny epsilon keeps identical models (delta exactly 0 up to float noise) from failing tolerance 0.
    return "ok" if bound >= -tolerance - 1e-12 else "regression"
