"""The gate's comparisons turned into check outcomes, each with a one-line summary a person can read."""

from __future__ import annotations

from dataclasses import asdict

from ct_assets.config.settings import Settings
from ct_assets.core.gate.results import (
    SECONDARY_CHECK,
    SLICE_CHECK,
    CheckOutcome,
    Comparison,
    fmt,
    regression_check,
)


def regression_outcome(set_name: str, c: Comparison, metric: str, tolerance: float) -> CheckOutcome:
    name = regression_check(set_name)
    if c.status == "no_champion":
        return CheckOutcome(
            name,
            True,
            f"{set_name}: no champion yet, nothing to regress from ({metric} {fmt(c.challenger)})",
            [asdict(c)],
        )
    if c.delta is None:
        return CheckOutcome(
            name,
            False,
            f"{set_name}: {metric} cannot be computed on this set ({c.rows} rows, {c.positives} positive)",
            [asdict(c)],
        )
    interval = f", {c.confidence:.0%} lower bound {c.low:+.4f}" if c.low is not None and c.confidence else ""
    verdict = "not worse" if c.status == "ok" else "worse"
    return CheckOutcome(
        name,
        c.status == "ok",
        f"{set_name}: {verdict} — {metric} {fmt(c.challenger)} vs champion {fmt(c.champion)} "
        f"(change {c.delta:+.4f}{interval}; tolerance -{tolerance})",
        [asdict(c)],
    )


def slice_outcome(
    comparisons: list[Comparison], failures: list[Comparison], metric: str, note: str
) -> CheckOutcome:
    insufficient = [c for c in comparisons if c.status == "insufficient"]
    tail = (
        (
            f"; insufficient evidence (too few rows or one class) in {len(insufficient)}: "
            + ", ".join(f"{c.set} {c.slice}" for c in insufficient[:6])
            + ("..." if len(insufficient) > 6 else "")
        )
        if insufficient
        else ""
    )
    underpowered = [c for c in comparisons if c.status == "underpowered"]
    if underpowered:
        tail += (
            "; underpowered, not clearly worse, so not blocking: "
            + ", ".join(f"{c.set} {c.slice}" for c in underpowered[:6])
            + ("..." if len(underpowered) > 6 else "")
        )
    if failures:
        worst = min(failures, key=lambda c: c.low if c.low is not None else (c.delta or 0.0))
        names = ", ".join(f"{c.set} {c.slice}" for c in failures[:5])
        summary = (
            f"{len(failures)} slice(s) not shown non-inferior within {_tolerance_text(comparisons)}: {names}; worst "
            f"{worst.set} {worst.slice}: {metric} {fmt(worst.challenger)} vs {fmt(worst.champion)} "
            f"(change {fmt(worst.delta)}, lower bound {fmt(worst.low)}){tail}"
        )
    else:
        compared = sum(1 for c in comparisons if c.slice != "overall" and c.status == "ok")
        measured = sum(1 for c in comparisons if c.status == "no_champion" and c.slice != "overall")
        if compared:
            summary = f"{compared} slice comparisons within {_tolerance_text(comparisons)}{tail}. {note}"
        elif measured:
            summary = f"no champion yet: {measured} slices measured, none compared{tail}"
        else:
            summary = f"no slice compared (no slice with enough rows of both classes){tail}"
    if failures:
        summary += f". {note}"
    return CheckOutcome(
        SLICE_CHECK,
        not failures,
        summary,
        [asdict(c) for c in comparisons if c.slice != "overall"],
    )


def secondary_outcome(secondary: list[dict], settings: Settings) -> CheckOutcome:
    gated = settings.gate.secondary
    if not gated:
        return CheckOutcome(
            SECONDARY_CHECK,
            True,
            "no secondary metric is gated ([gate.secondary] is empty); all are reported",
            secondary,
        )
    if not secondary:
        return CheckOutcome(
            SECONDARY_CHECK,
            True,
            f"no champion yet: nothing to compare the gated secondary metrics ({', '.join(gated)}) with",
            secondary,
        )
    bad = [r for r in secondary if r["status"] == "regression"]
    if bad:
        text = "; ".join(
            f"{r['set']} {r['metric']} {r['challenger']:.4f} vs {r['champion']:.4f} "
            f"(lower bound {fmt(r['low'])}, tolerance -{r['tolerance']})"
            for r in bad
        )
        return CheckOutcome(SECONDARY_CHECK, False, f"worse beyond tolerance: {text}", secondary)
    return CheckOutcome(
        SECONDARY_CHECK, True, "gated secondary metrics within tolerance: " + ", ".join(gated), secondary
    )


def name_forgetting(checks: dict[str, CheckOutcome], comparisons: list[Comparison]) -> None:
    """Better on the recent holdout but worse on the golden set is forgetting (the concept moved and the
    challenger lost what the golden set still asks for): say so in the golden check's summary."""
    by_set = {c.set: c for c in comparisons if c.slice == "overall"}
    golden, holdout = by_set.get("golden"), by_set.get("holdout")
    name = regression_check("golden")
    if (
        golden
        and holdout
        and name in checks
        and not checks[name].passed
        and holdout.delta is not None
        and holdout.delta > 0
    ):
        checks[name].summary = (
            "forgetting: better on the recent holdout "
            f"({holdout.delta:+.4f}) but worse on the golden set. " + checks[name].summary
        )


def _tolerance_text(comparisons: list[Comparison]) -> str:
    """The slice tolerance of each set, e.g. '-0.03 (holdout), -0.05 (golden)'."""
    by_set = {c.set: c.tolerance for c in comparisons if c.slice != "overall"}
    values = set(by_set.values())
    if len(values) <= 1:
        return f"-{next(iter(values))}" if values else "their tolerance"
    return ", ".join(f"-{tol} ({name})" for name, tol in by_set.items())
