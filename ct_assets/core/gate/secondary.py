"""Secondary metrics (log loss, Brier, calibration, F1, precision, recall) with paired bootstrap intervals."""

from __future__ import annotations

import numpy as np

from ct_assets.config.settings import SECONDARY_METRICS, Settings
from ct_assets.core.gate import stats
from ct_assets.core.gate.results import EvalSet

HIGHER_IS_BETTER = {
    "roc_auc": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "log_loss": False,
    "brier": False,
    "calibration_error": False,
}


def sign(metric: str) -> float:
    return 1.0 if HIGHER_IS_BETTER[metric] else -1.0


def bootstrap_requests(
    s: EvalSet, slices: list[tuple[str, np.ndarray]], metric: str, thr: float
) -> dict[str, stats.PairedRequest]:
    """What to bootstrap on this set: every secondary metric overall and, when the primary metric is
    not ROC AUC (which has DeLong), the primary metric overall and per slice."""
    assert s.champion is not None
    reqs = {
        f"secondary|{m}": stats.PairedRequest(
            stats.weighted_metric(m, thr), s.y, s.challenger, s.champion, sign(m)
        )
        for m in SECONDARY_METRICS
    }
    if metric != "roc_auc":
        fn = stats.weighted_metric(metric, thr)
        reqs["primary|overall"] = stats.PairedRequest(fn, s.y, s.challenger, s.champion, sign(metric))
        for label, mask in slices:
            reqs[f"primary|{label}"] = stats.PairedRequest(
                fn, s.y[mask], s.challenger[mask], s.champion[mask], sign(metric), mask
            )
    return reqs


def secondary_metrics(s: EvalSet, boot: dict[str, np.ndarray], settings: Settings) -> list[dict]:
    """Secondary metrics with paired bootstrap intervals (the shared resamples of this set)."""
    g = settings.gate
    assert s.champion is not None
    by_model = {"challenger": s.challenger, "champion": s.champion}
    out = []
    for m in SECONDARY_METRICS:
        fn = stats.weighted_metric(m, settings.decision_threshold)
        ones = np.ones((1, len(s.y)), dtype=np.float32)
        ch, cp = (float(fn(s.y, by_model[k], ones)[0]) for k in ("challenger", "champion"))
        d = boot.get(f"secondary|{m}", np.array([]))
        d = d[np.isfinite(d)]
        low = high = None
        if len(d) > 1:
            low, high = (float(x) for x in np.quantile(d, [1 - g.confidence, g.confidence]))
        tol = g.secondary.get(m)
        delta = sign(m) * (ch - cp)
        status = "reported"
        if tol is not None:
            bound = delta if g.rule == "point" or low is None else low
            status = "ok" if bound >= -tol - 1e-12 else "regression"
        out.append(
            {
                "set": s.name,
                "metric": m,
                "champion": cp,
                "challenger": ch,
                "delta": delta,
                "low": low,
                "high": high,
                "tolerance": tol,
                "status": status,
            }
        )
    return out
