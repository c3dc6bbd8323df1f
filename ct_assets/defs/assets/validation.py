"""Validation: the challenger against the champion, with the blocking checks that gate promotion."""

from collections.abc import Iterator

import dagster as dg

from ct_assets.config.settings import Settings
from ct_assets.core import gate
from ct_assets.core.datasets.training import DatasetInfo
from ct_assets.core.gate import summary
from ct_assets.core.gate.validate import Validation, validate_challenger
from ct_assets.defs.budget import seconds_left
from ct_assets.defs.constants import VALIDATION
from ct_assets.defs.metadata import table
from ct_assets.defs.resources import SettingsResource

BLOCKING_CHECKS: dict[str, str] = {
    gate.regression_check(
        "golden"
    ): "Non-inferior on the frozen golden set: the lower bound of the challenger's "
    "change in the primary metric is above -[gate] tolerance.",
    gate.regression_check(
        "holdout"
    ): "Non-inferior on the recent holdout: the lower bound of the challenger's "
    "change in the primary metric is above -[gate] tolerance.",
    gate.SLICE_CHECK: "Non-inferior in every slice with at least [gate] min_slice_rows rows (within -[gate] "
    "slice_tolerance, at a per-slice confidence chosen from the number of slices); smaller slices are reported "
    "as insufficient evidence.",
    gate.FLOOR_CHECK: "The challenger's primary metric reaches [gate] metric_floor on both sets.",
    gate.SANITY_CHECK: "The challenger's predictions are finite, within [0, 1] and not constant.",
    gate.SECONDARY_CHECK: "The secondary metrics named in [gate.secondary] are non-inferior within their tolerances.",
}
COMPARISON_COLUMNS = [
    "set",
    "slice",
    "rows",
    "positives",
    "champion",
    "challenger",
    "delta",
    "low",
    "high",
    "confidence",
    "status",
]


@dg.asset(
    group_name=VALIDATION,
    kinds={"lightgbm", "duckdb"},
    check_specs=[
        dg.AssetCheckSpec(n, asset="validation_report", description=d, blocking=True)
        for n, d in BLOCKING_CHECKS.items()
    ],
)
def validation_report(
    context: dg.AssetExecutionContext,
    settings: SettingsResource,
    challenger_model: dict,
    training_dataset: dict,
) -> Iterator:
    """The challenger against the current champion on the frozen golden set and the recent holdout,
    overall and per slice. Its blocking checks (severity ERROR) stop promotion in the same run; a
    blocked challenger is recorded in the ledger and waits in the review queue."""
    s = settings.load()
    ds = DatasetInfo.from_json(training_dataset)
    version = challenger_model["version"]
    if challenger_model.get("dataset_hash") != ds.dataset_hash:
        raise dg.Failure(
            f"challenger {version} was trained on {challenger_model.get('dataset_hash')}, "
            f"not on the training data set {ds.dataset_hash} handed to this report"
        )
    seconds_left(context, s)
    v = validate_challenger(s, ds, version, run_id=context.run_id, logger=context.log)
    context.log.info(f"validation of {version} against {v.champion_version or 'no champion'}: {v.verdict}")
    yield dg.Output(v.handoff(context.run_id, ds, s.primary_metric), metadata=_report_metadata(v, ds, s))
    for name in BLOCKING_CHECKS:
        yield _check_result(name, v)


def _report_metadata(v: Validation, ds: DatasetInfo, s: Settings) -> dict:
    """What the UI shows for a validation: verdict, summary, comparison table, links to the report."""
    result = v.result
    return {
        "summary": dg.MetadataValue.md(summary.markdown_summary(result, v.meta)),
        "verdict": v.verdict,
        "challenger_version": v.version,
        "champion_version": v.champion_version or "none",
        "primary_metric": s.primary_metric,
        "slice_confidence": result.slice_confidence_note,
        "champion_scores_reused": v.meta["champion_scores_reused"],
        "seconds": dg.MetadataValue.json({**v.seconds, "of which": v.data.seconds}),
        "comparison": table([c.__dict__ for c in result.comparisons], COMPARISON_COLUMNS),
        "secondary_metrics": table(result.secondary)
        if result.secondary
        else "no champion: nothing to compare",
        "decision_flips": dg.MetadataValue.json(result.flips),
        "report": dg.MetadataValue.path(str(v.files.html)),
        "report_json": dg.MetadataValue.path(str(v.files.json)),
        "data_hash": ds.dataset_hash,
        "golden_hash": ds.golden_hash,
    }


def _check_result(name: str, v: Validation) -> dg.AssetCheckResult:
    outcome = v.result.checks[name]
    return dg.AssetCheckResult(
        check_name=name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=outcome.summary,
        metadata={
            "challenger_version": v.version,
            "champion_version": v.champion_version or "none",
            "summary": outcome.summary,
            "details": table(outcome.rows),
        },
    )
