"""Validation: the challenger against the champion, with the blocking checks that gate promotion."""

from collections.abc import Iterator

import dagster as dg

from ct_assets.common import failpoints
from ct_assets.common.clock import utc_now
from ct_assets.common.stopwatch import Stopwatch
from ct_assets.core import alerts, gate, registry
from ct_assets.core.datasets.training import DatasetInfo
from ct_assets.core.gate import evaluation, report
from ct_assets.core.modeling import model as lgbm
from ct_assets.defs.budget import seconds_left
from ct_assets.defs.constants import VALIDATION
from ct_assets.defs.metadata import table
from ct_assets.defs.resources import SettingsResource
from ct_assets.store.warehouse import connect_writer, transaction

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
    code_version="1",
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
    watch = Stopwatch()
    challenger = lgbm.load_version(s.paths.models, version)
    with connect_writer(s) as con:
        champion_version = registry.champion(con)
        champion = lgbm.load_version(s.paths.models, champion_version) if champion_version else None
        watch.lap("load models")
        data = evaluation.eval_sets(s, con, ds, challenger, champion)
        watch.lap("read and score")
    sets = data.sets
    result = gate.evaluate(s, sets)
    watch.lap("gate")
    now = utc_now()
    meta = {
        "challenger_version": version,
        "champion_version": champion_version,
        "run_id": context.run_id,
        "created_at": now.isoformat(sep=" ", timespec="seconds"),
        "dataset_hash": ds.dataset_hash,
        "train_hash": ds.train_hash,
        "holdout_hash": ds.holdout_hash,
        "golden_hash": ds.golden_hash,
        "holdout_compared": evaluation.holdout_note(sets, ds),
        "champion_scores_reused": f"{data.champion_scores_reused:,} of {data.rows:,} rows"
        if champion
        else "no champion",
        "challenger_data_hash": challenger.card.get("data_hash"),
        "champion_data_hash": champion.card.get("data_hash") if champion else None,
        "code_version": challenger.card.get("code_version"),
        "importance_movers": evaluation.importance_movers(challenger, champion),
    }
    files = evaluation.write_report(s, result, sets, meta)
    watch.lap("report")

    primary = {name: result.metrics[name]["challenger"][s.primary_metric] for name in evaluation.EVAL_SETS}
    failpoints.hit("validate.before_ledger")
    with connect_writer(s) as con, transaction(con):
        registry.record_validation(
            con,
            challenger=version,
            champion=champion_version,
            now=now,
            passed=result.passed,
            failed_checks=result.failed_checks,
            summary=result.metrics,
            golden_hash=ds.golden_hash,
            dataset_hash=ds.dataset_hash,
            report_path=str(files.html),
            run_id=context.run_id,
        )
        if not result.passed:
            registry.record(
                con,
                action="blocked",
                version=version,
                champion_after=champion_version,
                now=now,
                data_hash=ds.dataset_hash,
                metrics=primary,
                verdict="blocked",
                reason="failed " + ", ".join(result.failed_checks),
                run_id=context.run_id,
            )
    if not result.passed:
        first = result.checks[result.failed_checks[0]].summary
        alerts.raise_alert(
            s,
            kind="block",
            cause=f"block:{version}",
            now=now,
            logger=context.log,
            message=f"gate blocked challenger {version} (champion stays {champion_version}): "
            f"{', '.join(result.failed_checks)}; {first}",
            details={
                "challenger": version,
                "champion": champion_version,
                "failed_checks": result.failed_checks,
                "report": str(files.html),
            },
        )

    watch.lap("ledger and alerts")
    verdict = "passed" if result.passed else "blocked: " + ", ".join(result.failed_checks)
    context.log.info(f"validation of {version} against {champion_version or 'no champion'}: {verdict}")
    rows = [
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in c.__dict__.items()}
        for c in result.comparisons
    ]
    secondary = [
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in result.secondary
    ]
    yield dg.Output(
        {
            "challenger_version": version,
            "champion_version": champion_version,
            "passed": result.passed,
            "failed_checks": result.failed_checks,
            "run_id": context.run_id,
            "dataset_hash": ds.dataset_hash,
            "golden_hash": ds.golden_hash,
            "primary_metric": s.primary_metric,
            "challenger_primary": primary,
            "report_path": str(files.html),
        },
        metadata={
            "summary": dg.MetadataValue.md(report.markdown_summary(result, meta)),
            "verdict": verdict,
            "challenger_version": version,
            "champion_version": champion_version or "none",
            "primary_metric": s.primary_metric,
            "slice_confidence": result.slice_confidence_note,
            "champion_scores_reused": meta["champion_scores_reused"],
            "seconds": dg.MetadataValue.json({**watch.seconds, "of which": data.seconds}),
            "comparison": table(rows, COMPARISON_COLUMNS),
            "secondary_metrics": table(secondary) if secondary else "no champion: nothing to compare",
            "decision_flips": dg.MetadataValue.json(result.flips),
            "report": dg.MetadataValue.path(str(files.html)),
            "report_json": dg.MetadataValue.path(str(files.json)),
            "data_hash": ds.dataset_hash,
            "golden_hash": ds.golden_hash,
        },
    )
    for name in BLOCKING_CHECKS:
        outcome = result.checks[name]
        yield dg.AssetCheckResult(
            check_name=name,
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=outcome.summary,
            metadata={
                "challenger_version": version,
                "champion_version": champion_version or "none",
                "summary": outcome.summary,
                "details": table(outcome.rows),
            },
        )
