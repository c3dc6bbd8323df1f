"""The promotion gate: challenger against champion, overall and per slice, on each evaluation set.

Plain logic shared by the `validation_report` asset (whose blocking checks are these outcomes) and by
`ct_assets.validation.validate_new_model`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ct_assets.config import Settings
from ct_assets.lib.metrics import all_metrics, improvement, meets_floor

SANITY_CHECK = "challenger_predictions_sane"
FLOOR_CHECK = "challenger_above_floor"
SLICE_CHECK = "challenger_no_slice_regression"


def regression_check(set_name: str) -> str:
    return f"challenger_no_regression_{set_name}"


@dataclass
class EvalSet:
    """One evaluation set: labels, slice values, and both models' scores on it."""

    name: str
    y: np.ndarray
    slices: dict[str, np.ndarray]
    challenger: np.ndarray
    champion: np.ndarray | None


@dataclass
class Comparison:
    """One row of the report: a set, a slice (or overall), both models' primary metric."""

    set: str
    slice: str
    rows: int
    positives: int
    challenger: float
    champion: float | None
    delta: float | None  # improvement of the challenger (positive = better)
    status: str  # ok | regression | insufficient | no_champion


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    summary: str
    rows: list[dict] = field(default_factory=list)


@dataclass
class GateResult:
    checks: dict[str, CheckOutcome]
    comparisons: list[Comparison]
    metrics: dict[str, dict[str, dict[str, float]]]  # set -> model -> metric -> value
    primary_metric: str

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks.values())

    @property
    def failed_checks(self) -> list[str]:
        return [n for n, c in self.checks.items() if not c.passed]

    def to_json(self) -> dict:
        return {
            "passed": self.passed,
            "failed_checks": self.failed_checks,
            "primary_metric": self.primary_metric,
            "checks": {n: asdict(c) for n, c in self.checks.items()},
            "comparisons": [asdict(c) for c in self.comparisons],
            "metrics": self.metrics,
        }


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def evaluate(settings: Settings, sets: list[EvalSet]) -> GateResult:
    """Compare the challenger with the champion (if any) on every set, overall and per slice."""
    g = settings.gate
    metric = settings.primary_metric
    thr = settings.decision_threshold
    comparisons: list[Comparison] = []
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    checks: dict[str, CheckOutcome] = {}

    def primary(y: np.ndarray, p: np.ndarray) -> float:
        return all_metrics(y, p, thr)[metric]

    sane_problems = []
    floor_problems = []
    slice_failures: list[Comparison] = []
    for s in sets:
        ch = all_metrics(s.y, s.challenger, thr)
        metrics[s.name] = {"challenger": ch}
        cp = all_metrics(s.y, s.champion, thr) if s.champion is not None else None
        if cp is not None:
            metrics[s.name]["champion"] = cp
        overall = _compare(
            s.name, "overall", s.y, ch[metric], cp[metric] if cp else None, metric, g.tolerance
        )
        comparisons.append(overall)

        name = regression_check(s.name)
        if overall.status == "no_champion":
            checks[name] = CheckOutcome(
                name,
                True,
                f"{s.name}: no champion yet, nothing to regress from ({metric} {_fmt(overall.challenger)})",
                [asdict(overall)],
            )
        elif overall.delta is None:
            checks[name] = CheckOutcome(
                name,
                False,
                f"{s.name}: {metric} cannot be computed on this set "
                f"({overall.rows} rows, {overall.positives} positive)",
                [asdict(overall)],
            )
        else:
            checks[name] = CheckOutcome(
                name,
                overall.status == "ok",
                f"{s.name}: {metric} {_fmt(overall.challenger)} vs champion {_fmt(overall.champion)} "
                f"(change {overall.delta:+.4f}, tolerance -{g.tolerance})",
                [asdict(overall)],
            )

        for col, values in s.slices.items():
            for value in sorted({str(v) for v in values.tolist()}):
                mask = values.astype(str) == value
                y = s.y[mask]
                label = f"{col}={value}"
                enough = int(mask.sum()) >= g.min_slice_rows and 0 < int(y.sum()) < len(y)
                if not enough:
                    comparisons.append(
                        Comparison(
                            s.name, label, int(mask.sum()), int(y.sum()), math.nan, None, None, "insufficient"
                        )
                    )
                    continue
                c = _compare(
                    s.name,
                    label,
                    y,
                    primary(y, s.challenger[mask]),
                    primary(y, s.champion[mask]) if s.champion is not None else None,
                    metric,
                    g.slice_tolerance,
                )
                comparisons.append(c)
                if c.status == "regression":
                    slice_failures.append(c)

        p = s.challenger
        if not np.all(np.isfinite(p)):
            sane_problems.append(f"{s.name}: {int(np.sum(~np.isfinite(p)))} non-finite predictions")
        elif np.any((p < 0) | (p > 1)):
            sane_problems.append(
                f"{s.name}: predictions outside [0, 1] (min {p.min():.3g}, max {p.max():.3g})"
            )
        elif len(p) > 1 and float(np.ptp(p)) == 0.0:
            sane_problems.append(f"{s.name}: every prediction is {p[0]:.4g} (a constant model)")
        if not meets_floor(metric, ch[metric], g.metric_floor):
            floor_problems.append(f"{s.name}: {metric} {_fmt(ch[metric])} below the floor {g.metric_floor}")

    insufficient = [c for c in comparisons if c.status == "insufficient"]
    tail = (
        f"; {len(insufficient)} slice(s) with too few rows or one class only, not gated"
        if insufficient
        else ""
    )
    if slice_failures:
        worst = min(slice_failures, key=lambda c: c.delta or 0.0)
        summary = (
            f"{len(slice_failures)} slice(s) regressed beyond -{g.slice_tolerance}; worst {worst.set} "
            f"{worst.slice}: {metric} {_fmt(worst.challenger)} vs {_fmt(worst.champion)}{tail}"
        )
    else:
        gated = sum(1 for c in comparisons if c.slice != "overall" and c.status in ("ok", "no_champion"))
        summary = f"{gated} slice comparisons within -{g.slice_tolerance}{tail}"
    checks[SLICE_CHECK] = CheckOutcome(
        SLICE_CHECK,
        not slice_failures,
        summary,
        [asdict(c) for c in comparisons if c.slice != "overall"],
    )
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
    return GateResult(checks, comparisons, metrics, metric)


def _compare(
    set_name: str,
    label: str,
    y: np.ndarray,
    challenger: float,
    champion: float | None,
    metric: str,
    tolerance: float,
) -> Comparison:
    rows, pos = len(y), int(np.sum(y))
    if champion is None:
        return Comparison(set_name, label, rows, pos, challenger, None, None, "no_champion")
    delta = improvement(metric, challenger, champion)
    if math.isnan(delta):
        return Comparison(set_name, label, rows, pos, challenger, champion, None, "insufficient")
    # A tiny epsilon keeps identical models (delta exactly 0 up to float noise) from failing a zero tolerance.
    status = "ok" if delta >= -tolerance - 1e-12 else "regression"
    return Comparison(set_name, label, rows, pos, challenger, champion, delta, status)
