"""The promotion gate: challenger against champion, overall and per slice, with intervals.

Plain logic shared by the `validation_report` asset (whose blocking checks are these outcomes) and by
`ct_assets.validation.validate_new_model`.

The rule is non-inferiority: a comparison passes when the lower bound of the one-sided interval of
the paired difference (challenger minus champion, oriented so that positive is better) is at least
`-tolerance`. Requiring this in every slice bounds false promotions slice by slice; what multiplies
with the number of slices is false blocks (a challenger as good as the champion blocked by noise in
one slice). So the per-slice confidence is chosen from the slices at hand: the highest level (at most
`confidence`, at least MIN_SLICE_CONFIDENCE) at which an exactly-as-good challenger would be blocked
in at most `false_block_rate` of cycles, summed over the gated slices with their standard errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ct_assets.config import Settings
from ct_assets.core.gate import stats
from ct_assets.core.gate.outcomes import name_forgetting, regression_outcome, secondary_outcome, slice_outcome
from ct_assets.core.gate.paired import paired_difference, status_of, z_value
from ct_assets.core.gate.results import (
    FLOOR_CHECK,
    SANITY_CHECK,
    SECONDARY_CHECK,
    SLICE_CHECK,
    CheckOutcome,
    Comparison,
    EvalSet,
    GateResult,
    fmt,
    regression_check,
    tolerances,
)
from ct_assets.core.gate.secondary import bootstrap_requests, secondary_metrics
from ct_assets.core.gate.slices import PendingSlice, judge_slices, slice_masks
from ct_assets.core.modeling.metrics import all_metrics, meets_floor, metric_value


@dataclass
class _SetVerdicts:
    """What one evaluation set contributes: its metrics, comparisons and the slices still to judge."""

    metrics: dict[str, dict[str, float]]
    comparisons: list[Comparison]
    pending: list[PendingSlice]
    secondary: list[dict]
    flips: float | None
    regression: CheckOutcome


def evaluate(settings: Settings, sets: list[EvalSet]) -> GateResult:
    """Compare the challenger with the champion (if any) on every set, overall and per slice."""
    g, metric = settings.gate, settings.primary_metric
    verdicts = [
        _not_compared(raw, settings) if raw.not_compared else _evaluate_set(_usable(raw), settings)
        for raw in sets
    ]
    checks = {regression_check(s.name): v.regression for s, v in zip(sets, verdicts, strict=True)}
    metrics = {s.name: v.metrics for s, v in zip(sets, verdicts, strict=True)}
    comparisons = [c for v in verdicts for c in v.comparisons]
    secondary = [r for v in verdicts for r in v.secondary]
    flips = {s.name: v.flips for s, v in zip(sets, verdicts, strict=True) if v.flips is not None}
    has_champion = any(s.champion is not None for s in sets)
    judged = judge_slices([p for v in verdicts for p in v.pending], settings, champion=has_champion)
    comparisons += judged.comparisons
    checks[SLICE_CHECK] = slice_outcome(comparisons, judged.failures, metric, judged.note)
    compared = [s for s in sets if not s.not_compared]
    checks[FLOOR_CHECK] = _floor_outcome(compared, metrics, settings)
    checks[SANITY_CHECK] = _sanity_outcome(compared)
    checks[SECONDARY_CHECK] = secondary_outcome(secondary, settings)
    name_forgetting(checks, comparisons)
    for s in sets:  # a set compared on part of its rows says so (core.gate.comparable)
        if s.note and regression_check(s.name) in checks:
            checks[regression_check(s.name)].summary += f" ({s.note})"
    return GateResult(
        checks, comparisons, metrics, secondary, flips, metric, g.rule, judged.confidence, judged.note
    )


def _not_compared(s: EvalSet, settings: Settings) -> _SetVerdicts:
    """A set with no row both models can score (core.gate.comparable): shown, not compared, not blocking."""
    tol, _ = tolerances(settings.gate, s.name)
    nan = {
        k: math.nan for k in (*all_metrics(np.array([0, 1]), np.array([0.2, 0.8]), 0.5), "calibration_error")
    }
    metrics = {"challenger": dict(nan), **({"champion": dict(nan)} if s.champion is not None else {})}
    row = Comparison(s.name, "overall", len(s.y), int(np.sum(s.y)), math.nan, tol, "not_compared")
    outcome = CheckOutcome(
        regression_check(s.name), True, f"{s.name}: not compared: {s.not_compared}", [row.__dict__]
    )
    return _SetVerdicts(metrics, [row], [], [], None, outcome)


def _sanity_problem(raw: EvalSet) -> str | None:
    """What is wrong with the challenger's raw predictions on this set, if anything."""
    p = raw.challenger
    if not np.all(np.isfinite(p)):
        return f"{raw.name}: {int(np.sum(~np.isfinite(p)))} non-finite predictions"
    if np.any((p < 0) | (p > 1)):
        return f"{raw.name}: predictions outside [0, 1] (min {p.min():.3g}, max {p.max():.3g})"
    if len(p) > 1 and float(np.ptp(p)) == 0.0:
        return f"{raw.name}: every prediction is {p[0]:.4g} (a constant model)"
    return None


def _usable(raw: EvalSet) -> EvalSet:
    """Metrics need probabilities: NaN or out-of-range scores (which already fail sanity) are made usable."""
    return EvalSet(
        raw.name,
        raw.y,
        raw.slices,
        stats.as_probabilities(raw.challenger),
        None if raw.champion is None else stats.as_probabilities(raw.champion),
    )


def _model_metrics(y: np.ndarray, p: np.ndarray, thr: float) -> dict[str, float]:
    out = all_metrics(y, p, thr)
    out["calibration_error"] = stats.calibration_error(y, p)
    return out


def _evaluate_set(s: EvalSet, settings: Settings) -> _SetVerdicts:
    """Metrics of both models on one set, the overall comparison with its check, the slices too small
    to compare, and the paired differences of the others (judged across all sets afterwards)."""
    g, metric, thr = settings.gate, settings.primary_metric, settings.decision_threshold
    tol, slice_tol = tolerances(g, s.name)
    metrics = {"challenger": _model_metrics(s.y, s.challenger, thr)}
    slices = slice_masks(s, g.min_slice_rows)
    boot: dict[str, np.ndarray] = {}
    ranked = None  # both models' scores sorted once, for DeLong overall and on every slice
    secondary: list[dict] = []
    flips = None
    if s.champion is not None:
        if metric == "roc_auc":
            ranked = stats.PairedScores(s.y, s.challenger, s.champion)
        metrics["champion"] = _model_metrics(s.y, s.champion, thr)
        flips = float(np.mean((s.challenger >= thr) != (s.champion >= thr))) if len(s.y) else 0.0
        boot = stats.bootstrap_differences(
            len(s.y), bootstrap_requests(s, slices, metric, thr), resamples=g.bootstrap_resamples
        )
        secondary = secondary_metrics(s, boot, settings)
    overall = _overall(s, metric, thr, boot.get("primary|overall"), ranked, settings, tol)
    comparisons = [overall]
    pending = []
    for label, mask in slices:
        y = s.y[mask]
        n, pos = int(mask.sum()), int(y.sum())
        if n < g.min_slice_rows or pos == 0 or pos == n:
            comparisons.append(Comparison(s.name, label, n, pos, math.nan, slice_tol, "insufficient"))
        elif s.champion is None:
            value = metric_value(metric, y, s.challenger[mask], thr)
            comparisons.append(Comparison(s.name, label, n, pos, value, slice_tol, "no_champion"))
        else:
            diff = paired_difference(metric, s, mask, thr, boot.get(f"primary|{label}"), ranked)
            pending.append(PendingSlice(s, label, mask, diff, slice_tol))
    regression = regression_outcome(s.name, overall, metric, tol)
    return _SetVerdicts(metrics, comparisons, pending, secondary, flips, regression)


def _floor_outcome(
    sets: list[EvalSet], metrics: dict[str, dict[str, dict[str, float]]], settings: Settings
) -> CheckOutcome:
    """The challenger's primary metric reaches [gate] metric_floor on every set."""
    metric, floor = settings.primary_metric, settings.gate.metric_floor
    problems = [
        f"{s.name}: {metric} {fmt(metrics[s.name]['challenger'][metric])} below the floor {floor}"
        for s in sets
        if not meets_floor(metric, metrics[s.name]["challenger"][metric], floor)
    ]
    return CheckOutcome(
        FLOOR_CHECK,
        not problems,
        "; ".join(problems) or f"{metric} at or above {floor} on " + ", ".join(s.name for s in sets),
        [{"set": s.name, metric: metrics[s.name]["challenger"][metric], "floor": floor} for s in sets],
    )


def _sanity_outcome(sets: list[EvalSet]) -> CheckOutcome:
    """The challenger's raw predictions are finite, within [0, 1] and not constant on every set."""
    problems = [x for x in (_sanity_problem(s) for s in sets) if x]
    return CheckOutcome(
        SANITY_CHECK,
        not problems,
        "; ".join(problems) or "all predictions finite, within [0, 1] and not constant",
        [
            {
                "set": s.name,
                "rows": len(s.challenger),
                "min": float(np.nanmin(s.challenger)) if len(s.challenger) else None,
                "max": float(np.nanmax(s.challenger)) if len(s.challenger) else None,
            }
            for s in sets
        ],
    )


def _overall(
    s: EvalSet,
    metric: str,
    thr: float,
    boot: np.ndarray | None,
    ranked: stats.PairedScores | None,
    settings: Settings,
    tolerance: float,
) -> Comparison:
    g = settings.gate
    rows, pos = len(s.y), int(np.sum(s.y))
    if s.champion is None:
        value = metric_value(metric, s.y, s.challenger, thr)
        return Comparison(s.name, "overall", rows, pos, value, tolerance, "no_champion")
    d = paired_difference(metric, s, None, thr, boot, ranked)
    if math.isnan(d.delta):
        return Comparison(
            s.name, "overall", rows, pos, d.challenger, tolerance, "insufficient", champion=d.champion
        )
    low = high = None
    conf = None
    if g.rule == "non_inferiority" and d.se is not None:
        conf = g.confidence
        low, high = d.delta - z_value(conf) * d.se, d.delta + z_value(conf) * d.se
    return Comparison(
        s.name,
        "overall",
        rows,
        pos,
        d.challenger,
        tolerance,
        status_of(d.delta, low, tolerance, g.rule),
        champion=d.champion,
        delta=d.delta,
        low=low,
        high=high,
        confidence=conf,
    )
