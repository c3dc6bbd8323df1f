"""What the gate produces: the evaluation sets it reads, its comparisons, check outcomes and result."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ct_assets.config import GateSettings

SANITY_CHECK = "challenger_predictions_sane"


FLOOR_CHECK = "challenger_above_floor"


SLICE_CHECK = "challenger_no_slice_regression"


SECONDARY_CHECK = "challenger_secondary_metrics_hold"


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
    # Why the set is shown but not compared (no row both models can score: core.gate.comparable); "" when
    # it is compared. What restricted it to rows both can score, when something did.
    not_compared: str = ""
    note: str = ""


@dataclass
class Comparison:
    """One row of the report: a set, a slice (or overall), both models' primary metric, the paired
    difference with its interval, and the verdict on it."""

    set: str
    slice: str
    rows: int
    positives: int
    challenger: float
    tolerance: float
    status: str  # ok | regression | insufficient | underpowered | no_champion | not_compared
    champion: float | None = None
    delta: float | None = None  # improvement of the challenger (positive = better)
    low: float | None = None  # interval of delta
    high: float | None = None
    confidence: float | None = None  # one-sided confidence of each bound


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
    secondary: list[dict]  # set, metric, champion, challenger, delta, low, high, tolerance, status
    flips: dict[str, float]  # set -> share of rows whose decision changes at the threshold
    primary_metric: str
    rule: str
    slice_confidence: float | None
    slice_confidence_note: str

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
            "rule": self.rule,
            "slice_confidence": self.slice_confidence,
            "slice_confidence_note": self.slice_confidence_note,
            "checks": {n: asdict(c) for n, c in self.checks.items()},
            "comparisons": [asdict(c) for c in self.comparisons],
            "metrics": self.metrics,
            "secondary": self.secondary,
            "decision_flips": self.flips,
        }


def fmt(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


GOLDEN = "golden"


def tolerances(gate: GateSettings, set_name: str) -> tuple[float, float]:
    """(overall, per-slice) tolerance on an evaluation set: the golden set bounds catastrophic forgetting
    only ([gate] golden_tolerance); every other set is held to [gate] tolerance and slice_tolerance."""
    if set_name == GOLDEN:
        return gate.golden_tolerance, max(gate.slice_tolerance, gate.golden_tolerance)
    return gate.tolerance, gate.slice_tolerance
