"""Per-slice comparisons: the slices of an evaluation set, the per-slice confidence chosen so that an
exactly-as-good challenger is rarely blocked by noise in one slice, and each slice's verdict at it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from ct_assets.config.settings import Settings
from ct_assets.core.gate import stats
from ct_assets.core.gate.paired import PairedDiff, status_of, z_value
from ct_assets.core.gate.results import Comparison, EvalSet

MIN_SLICE_CONFIDENCE = 0.80


def choose_slice_confidence(
    ses: list[float], tolerance: float | list[float], false_block_rate: float, ceiling: float
) -> tuple[float, float]:
    """The highest one-sided confidence in [MIN_SLICE_CONFIDENCE, ceiling] at which a challenger exactly
    as good as the champion is blocked in at most `false_block_rate` of cycles across these slices.
    Returns (confidence, expected false-block rate at it). `tolerance` is one for all slices, or one
    per slice (the golden set's slices are held to a larger one)."""

    spread = np.asarray(ses, dtype=np.float64)
    tol = np.broadcast_to(np.asarray(tolerance, dtype=np.float64), spread.shape)
    keep = spread > 0  # a zero-width interval never blocks
    spread, tol = spread[keep], tol[keep]

    def rate(z: float) -> float:  # chance that at least one slice blocks, slices taken as independent
        return float(1.0 - np.prod(1.0 - stats.normal().cdf(z - tol / spread)))

    lo, hi = z_value(MIN_SLICE_CONFIDENCE), z_value(ceiling)
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
    return float(stats.normal().cdf(lo)), rate(lo)


@dataclass
class PendingSlice:
    """A slice with enough rows and both classes, compared once the per-slice confidence is chosen."""

    set: EvalSet
    label: str
    mask: np.ndarray
    diff: PairedDiff
    tolerance: float  # its set's slice tolerance


@dataclass
class SliceJudgement:
    comparisons: list[Comparison]
    failures: list[Comparison]
    confidence: float | None
    note: str


def judge_slices(pending: list[PendingSlice], settings: Settings, *, champion: bool = True) -> SliceJudgement:
    """Per-slice confidence, chosen from the gated slices' standard errors (see the module docstring),
    and each slice's verdict at it.

    A slice so noisy that even at the floor confidence an exactly-as-good challenger would be blocked
    more often than its share of the false-block budget is underpowered: it cannot show
    non-inferiority, so it blocks only when it is clearly worse (its upper bound below -tolerance).
    With no champion (`champion=False`) nothing is compared, and the note says why."""
    g = settings.gate
    slice_conf: float | None = None
    powered: list[bool] = []
    note = (
        "no slice compared (no slice with enough rows of both classes)"
        if champion
        else "no champion yet: no slice compared, so no per-slice confidence was chosen"
    )
    if pending and g.rule == "non_inferiority":
        budget = g.false_block_rate / len(pending)
        z_floor = z_value(MIN_SLICE_CONFIDENCE)
        powered = [
            bool(
                p.diff.se is not None
                and (p.diff.se == 0 or stats.normal().cdf(z_floor - p.tolerance / p.diff.se) <= budget)
            )
            for p in pending
        ]
        gated = [p for p, ok in zip(pending, powered, strict=True) if ok and p.diff.se is not None]
        slice_conf, expected = choose_slice_confidence(
            [p.diff.se for p in gated if p.diff.se is not None],
            [p.tolerance for p in gated],
            g.false_block_rate,
            g.confidence,
        )
        note = _confidence_note(slice_conf, expected, sum(powered), len(pending) - sum(powered), settings)
    elif pending:
        note = "rule 'point': slices compared on point estimates, without intervals"
    z_slice = z_value(slice_conf) if slice_conf is not None else None
    comparisons = [
        _slice_comparison(p, z_slice, slice_conf, powered[n] if powered else None, settings)
        for n, p in enumerate(pending)
    ]
    failures = [c for c in comparisons if c.status == "regression"]
    return SliceJudgement(comparisons, failures, slice_conf, note)


def _confidence_note(conf: float, expected: float, powered: int, weak: int, settings: Settings) -> str:
    g = settings.gate
    note = (
        f"per-slice one-sided confidence {conf:.1%}, chosen over {powered} slice comparisons "
        f"so that an exactly-as-good challenger is falsely blocked in about {expected:.1%} of cycles "
        f"(target {g.false_block_rate:.0%}; bounds {MIN_SLICE_CONFIDENCE:.0%}-{g.confidence:.0%})"
    )
    if weak:
        note += (
            f"; {weak} slice(s) too noisy to show non-inferiority within their tolerance "
            "(underpowered): they block only when clearly worse (upper bound below -tolerance)"
        )
    return note


def _slice_comparison(
    p: PendingSlice, z: float | None, conf: float | None, powered: bool | None, settings: Settings
) -> Comparison:
    """One slice's comparison at the chosen confidence (z): ok, regression, underpowered or insufficient."""
    g, d = settings.gate, p.diff
    low = high = None
    if z is not None and d.se is not None:
        low, high = d.delta - z * d.se, d.delta + z * d.se
    if math.isnan(d.delta):
        status = "insufficient"
    elif powered is not None and not powered:
        status = "regression" if high is not None and high < -p.tolerance else "underpowered"
    else:
        status = status_of(d.delta, low, p.tolerance, g.rule)
    return Comparison(
        p.set.name,
        p.label,
        int(p.mask.sum()),
        int(p.set.y[p.mask].sum()),
        d.challenger,
        p.tolerance,
        status,
        champion=d.champion,
        delta=None if math.isnan(d.delta) else d.delta,
        low=low,
        high=high,
        confidence=conf,
    )


def slice_masks(s: EvalSet, min_rows: int) -> list[tuple[str, np.ndarray]]:
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
