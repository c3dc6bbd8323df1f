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
import polars as pl
from scipy.stats import norm

from ct_assets.config import Settings
from ct_assets.core.gate import stats
from ct_assets.core.gate.outcomes import name_forgetting, regression_outcome, secondary_outcome, slice_outcome
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
)
from ct_assets.core.gate.secondary import bootstrap_requests, secondary_metrics
from ct_assets.core.modeling.metrics import all_metrics, improvement, meets_floor, metric_value

MIN_SLICE_CONFIDENCE = 0.80


def _z(one_sided_confidence: float) -> float:
    return float(norm.ppf(one_sided_confidence))


@dataclass
class _Diff:
    """A paired difference and its standard error (None when it cannot be computed)."""

    challenger: float
    champion: float
    delta: float
    se: float | None


def _paired(
    metric: str,
    s: EvalSet,
    mask: np.ndarray | None,
    thr: float,
    boot: np.ndarray | None,
    ranked: stats.PairedScores | None,
) -> _Diff:
    """Point difference of the primary metric on the rows in `mask` (all rows when None) and its
    standard error: DeLong for ROC AUC (which gives both AUCs on the way; `ranked` holds this set's
    scores sorted once), the standard deviation of the bootstrap differences `boot` otherwise."""
    if metric == "roc_auc" and ranked is not None and (d := ranked.delong(mask)) is not None:
        delta = improvement(metric, d.challenger_auc, d.champion_auc)
        se = d.se if math.isfinite(d.se) else None
        return _Diff(d.challenger_auc, d.champion_auc, delta, None if math.isnan(delta) else se)
    assert s.champion is not None
    y, challenger, champion = (
        (s.y, s.challenger, s.champion) if mask is None else (s.y[mask], s.challenger[mask], s.champion[mask])
    )
    ch = metric_value(metric, y, challenger, thr)
    cp = metric_value(metric, y, champion, thr)
    delta = improvement(metric, ch, cp)
    if math.isnan(delta) or metric == "roc_auc":  # DeLong needs two rows of each class
        return _Diff(ch, cp, delta, None)
    se = float(np.nanstd(boot, ddof=1)) if boot is not None and len(boot) > 1 else None
    return _Diff(ch, cp, delta, se if se is not None and math.isfinite(se) else None)


def choose_slice_confidence(
    ses: list[float], tolerance: float, false_block_rate: float, ceiling: float
) -> tuple[float, float]:
    """The highest one-sided confidence in [MIN_SLICE_CONFIDENCE, ceiling] at which a challenger exactly
    as good as the champion is blocked in at most `false_block_rate` of cycles across these slices.
    Returns (confidence, expected false-block rate at it)."""

    spread = np.asarray(ses, dtype=np.float64)
    spread = spread[spread > 0]  # a zero-width interval never blocks

    def rate(z: float) -> float:  # chance that at least one slice blocks, slices taken as independent
        return float(1.0 - np.prod(1.0 - norm.cdf(z - tolerance / spread)))

    lo, hi = _z(MIN_SLICE_CONFIDENCE), _z(ceiling)
    if not ses or rate(hi) <= false_block_rate:
        return ceiling, rate(hi)
    if rate(lo) > false_block_rate:
        return MIN_SLICE_CONFIDENCE, rate(lo)
    for _ in range(60):  # bisection: rate(z) grows with z
        mid = (lo + hi) / 2
        if rate(mid) <= false_block_rate:
            lo = mid
        else:
            hi = mid
    return float(norm.cdf(lo)), rate(lo)


def _status(delta: float, low: float | None, tolerance: float, rule: str) -> str:
    bound = delta if rule == "point" or low is None else low
    # A tiny epsilon keeps identical models (delta exactly 0 up to float noise) from failing tolerance 0.
    return "ok" if bound >= -tolerance - 1e-12 else "regression"


def evaluate(settings: Settings, sets: list[EvalSet]) -> GateResult:
    """Compare the challenger with the champion (if any) on every set, overall and per slice."""
    g = settings.gate
    metric = settings.primary_metric
    thr = settings.decision_threshold
    conf = g.confidence
    checks: dict[str, CheckOutcome] = {}
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    comparisons: list[Comparison] = []
    secondary: list[dict] = []
    flips: dict[str, float] = {}
    sane_problems: list[str] = []
    floor_problems: list[str] = []
    pending_slices: list[tuple[EvalSet, str, np.ndarray, _Diff]] = []

    for raw in sets:
        p = raw.challenger  # sanity is judged on the raw predictions
        if not np.all(np.isfinite(p)):
            sane_problems.append(f"{raw.name}: {int(np.sum(~np.isfinite(p)))} non-finite predictions")
        elif np.any((p < 0) | (p > 1)):
            sane_problems.append(
                f"{raw.name}: predictions outside [0, 1] (min {p.min():.3g}, max {p.max():.3g})"
            )
        elif len(p) > 1 and float(np.ptp(p)) == 0.0:
            sane_problems.append(f"{raw.name}: every prediction is {p[0]:.4g} (a constant model)")
        # Metrics need probabilities: NaN or out-of-range scores (already failing sanity) are made usable.
        s = EvalSet(
            raw.name,
            raw.y,
            raw.slices,
            stats.as_probabilities(raw.challenger),
            None if raw.champion is None else stats.as_probabilities(raw.champion),
        )
        ch = all_metrics(s.y, s.challenger, thr)
        ch["calibration_error"] = stats.calibration_error(s.y, s.challenger)
        metrics[s.name] = {"challenger": ch}
        slices = _slice_masks(s, g.min_slice_rows)
        boot: dict[str, np.ndarray] = {}
        ranked = None  # both models' scores sorted once, for DeLong overall and on every slice
        if s.champion is not None:
            if metric == "roc_auc":
                ranked = stats.PairedScores(s.y, s.challenger, s.champion)
            cp = all_metrics(s.y, s.champion, thr)
            cp["calibration_error"] = stats.calibration_error(s.y, s.champion)
            metrics[s.name]["champion"] = cp
            flips[s.name] = float(np.mean((s.challenger >= thr) != (s.champion >= thr))) if len(s.y) else 0.0
            boot = stats.bootstrap_differences(
                len(s.y), bootstrap_requests(s, slices, metric, thr), resamples=g.bootstrap_resamples
            )
            secondary += secondary_metrics(s, boot, settings)
        overall = _overall(s, metric, thr, boot.get("primary|overall"), ranked, settings)
        comparisons.append(overall)
        checks[regression_check(s.name)] = regression_outcome(s.name, overall, metric, g.tolerance)

        for label, mask in slices:
            y = s.y[mask]
            n, pos = int(mask.sum()), int(y.sum())
            if n < g.min_slice_rows or pos == 0 or pos == n:
                comparisons.append(
                    Comparison(s.name, label, n, pos, math.nan, g.slice_tolerance, "insufficient")
                )
            elif s.champion is None:
                value_ch = metric_value(metric, y, s.challenger[mask], thr)
                comparisons.append(
                    Comparison(s.name, label, n, pos, value_ch, g.slice_tolerance, "no_champion")
                )
            else:
                d = _paired(metric, s, mask, thr, boot.get(f"primary|{label}"), ranked)
                pending_slices.append((s, label, mask, d))

        if not meets_floor(metric, ch[metric], g.metric_floor):
            floor_problems.append(f"{s.name}: {metric} {fmt(ch[metric])} below the floor {g.metric_floor}")

    # Per-slice confidence, chosen from the gated slices' standard errors (see the module docstring).
    # A slice so noisy that even at the floor confidence an exactly-as-good challenger would be blocked
    # more often than its share of the false-block budget is underpowered: it cannot show
    # non-inferiority, so it blocks only when it is clearly worse (its upper bound below -tolerance).
    slice_conf: float | None = None
    powered: list[bool] = []
    note = "no slice compared (no champion yet, or no slice with enough rows)"
    if pending_slices and g.rule == "non_inferiority":
        budget = g.false_block_rate / len(pending_slices)
        z_floor = _z(MIN_SLICE_CONFIDENCE)
        powered = [
            d.se is not None and (d.se == 0 or norm.cdf(z_floor - g.slice_tolerance / d.se) <= budget)
            for *_, d in pending_slices
        ]
        ses = [d.se for (*_, d), p in zip(pending_slices, powered, strict=True) if p and d.se is not None]
        slice_conf, expected = choose_slice_confidence(ses, g.slice_tolerance, g.false_block_rate, conf)
        weak = len(pending_slices) - sum(powered)
        note = (
            f"per-slice one-sided confidence {slice_conf:.1%}, chosen over {sum(powered)} slice comparisons "
            f"so that an exactly-as-good challenger is falsely blocked in about {expected:.1%} of cycles "
            f"(target {g.false_block_rate:.0%}; bounds {MIN_SLICE_CONFIDENCE:.0%}-{conf:.0%})"
        )
        if weak:
            note += (
                f"; {weak} slice(s) too noisy to show non-inferiority within -{g.slice_tolerance} "
                "(underpowered): they block only when clearly worse (upper bound below -tolerance)"
            )
    elif pending_slices:
        note = "rule 'point': slices compared on point estimates, without intervals"
    z_slice = _z(slice_conf) if slice_conf is not None else None
    slice_failures = []
    for n, (s, label, mask, d) in enumerate(pending_slices):
        low = high = None
        if z_slice is not None and d.se is not None:
            low, high = d.delta - z_slice * d.se, d.delta + z_slice * d.se
        if math.isnan(d.delta):
            status = "insufficient"
        elif powered and not powered[n]:
            status = "regression" if high is not None and high < -g.slice_tolerance else "underpowered"
        else:
            status = _status(d.delta, low, g.slice_tolerance, g.rule)
        c = Comparison(
            s.name,
            label,
            int(mask.sum()),
            int(s.y[mask].sum()),
            d.challenger,
            g.slice_tolerance,
            status,
            champion=d.champion,
            delta=None if math.isnan(d.delta) else d.delta,
            low=low,
            high=high,
            confidence=slice_conf,
        )
        comparisons.append(c)
        if status == "regression":
            slice_failures.append(c)

    checks[SLICE_CHECK] = slice_outcome(comparisons, slice_failures, metric, g.slice_tolerance, note)
    checks[FLOOR_CHECK] = CheckOutcome(
        FLOOR_CHECK,
        not floor_problems,
        "; ".join(floor_problems)
        or f"{metric} at or above {g.metric_floor} on " + ", ".join(s.name for s in sets),
        [
            {"set": s.name, metric: metrics[s.name]["challenger"][metric], "floor": g.metric_floor}
            for s in sets
        ],
    )
    checks[SANITY_CHECK] = CheckOutcome(
        SANITY_CHECK,
        not sane_problems,
        "; ".join(sane_problems) or "all predictions finite, within [0, 1] and not constant",
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
    checks[SECONDARY_CHECK] = secondary_outcome(secondary, settings)
    name_forgetting(checks, comparisons)
    return GateResult(checks, comparisons, metrics, secondary, flips, metric, g.rule, slice_conf, note)


def _overall(
    s: EvalSet,
    metric: str,
    thr: float,
    boot: np.ndarray | None,
    ranked: stats.PairedScores | None,
    settings: Settings,
) -> Comparison:
    g = settings.gate
    rows, pos = len(s.y), int(np.sum(s.y))
    if s.champion is None:
        value = metric_value(metric, s.y, s.challenger, thr)
        return Comparison(s.name, "overall", rows, pos, value, g.tolerance, "no_champion")
    d = _paired(metric, s, None, thr, boot, ranked)
    if math.isnan(d.delta):
        return Comparison(
            s.name, "overall", rows, pos, d.challenger, g.tolerance, "insufficient", champion=d.champion
        )
    low = high = None
    conf = None
    if g.rule == "non_inferiority" and d.se is not None:
        conf = g.confidence
        low, high = d.delta - _z(conf) * d.se, d.delta + _z(conf) * d.se
    return Comparison(
        s.name,
        "overall",
        rows,
        pos,
        d.challenger,
        g.tolerance,
        _status(d.delta, low, g.tolerance, g.rule),
        champion=d.champion,
        delta=d.delta,
        low=low,
        high=high,
        confidence=conf,
    )


def _slice_masks(s: EvalSet, min_rows: int) -> list[tuple[str, np.ndarray]]:
    """(label, row mask) for every value of every slice column, in a stable order. Values are compared
    as text; a column of Python strings (what polars gives for text) is compared by polars, which is
    far faster than numpy on object arrays."""
    out = []
    for col, values in s.slices.items():
        if values.dtype == object and all(isinstance(v, str) for v in values[:1000]):
            text = pl.Series(values, dtype=pl.String, strict=False)
            if text.null_count() == 0:  # every value was a string
                for value in text.unique().sort().to_list():
                    out.append((f"{col}={value}", (text == value).to_numpy()))
                continue
        text_values = values.astype(str)
        for value in sorted(set(text_values.tolist())):
            out.append((f"{col}={value}", text_values == value))
    return out
