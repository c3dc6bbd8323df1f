"""Validation: the challenger against the champion, with the blocking checks that gate promotion."""

import json
import os
from collections.abc import Iterator

import dagster as dg

from ct_assets.assets import VALIDATION
from ct_assets.assets.metadata import table
from ct_assets.lib import gate, registry
from ct_assets.lib import model as lgbm
from ct_assets.lib.datasets import DatasetInfo, read_golden, read_split
from ct_assets.lib.ingest import utc_now
from ct_assets.lib.warehouse import connect_writer, transaction
from ct_assets.resources import SettingsResource

EVAL_SETS = ("golden", "holdout")
BLOCKING_CHECKS: dict[str, str] = {
    gate.regression_check(
        "golden"
    ): "The challenger's primary metric on the golden set is not worse than the "
    "champion's by more than [gate] tolerance.",
    gate.regression_check(
        "holdout"
    ): "The challenger's primary metric on the recent holdout is not worse than the "
    "champion's by more than [gate] tolerance.",
    gate.SLICE_CHECK: "No slice with at least [gate] min_slice_rows rows is worse than the champion by more than "
    "[gate] slice_tolerance.",
    gate.FLOOR_CHECK: "The challenger's primary metric reaches [gate] metric_floor on both sets.",
    gate.SANITY_CHECK: "The challenger's predictions are finite, within [0, 1] and not constant.",
}
COMPARISON_COLUMNS = ["set", "slice", "rows", "positives", "champion", "challenger", "delta", "status"]


def build_eval_sets(
    s, con, ds: DatasetInfo, challenger: lgbm.LoadedModel, champion: lgbm.LoadedModel | None
) -> list[gate.EvalSet]:
    frames = {"golden": read_golden(con, s, ds.golden_hash), "holdout": read_split(con, s, ds, "holdout")}
    out = []
    for name in EVAL_SETS:
        f = frames[name]
        out.append(
            gate.EvalSet(
                name=name,
                y=lgbm.labels(f, s),
                slices={c: f[c].fill_null("(null)").to_numpy() for c in s.columns.slices},
                challenger=challenger.predict(f),
                champion=champion.predict(f) if champion is not None else None,
            )
        )
    return out


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
    challenger = lgbm.load_version(s.paths.models, version)
    with connect_writer(s) as con:
        champion_version = registry.champion(con)
        champion = lgbm.load_version(s.paths.models, champion_version) if champion_version else None
        sets = build_eval_sets(s, con, ds, challenger, champion)
    result = gate.evaluate(s, sets)
    now = utc_now()
    report_path = s.paths.reports / f"{version}.json"
    report = {
        "challenger_version": version,
        "champion_version": champion_version,
        "run_id": context.run_id,
        "created_at": now.isoformat(),
        "dataset_hash": ds.dataset_hash,
        "golden_hash": ds.golden_hash,
        **result.to_json(),
    }
    report_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = report_path.with_name(f".{report_path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp, report_path)

    primary = {name: result.metrics[name]["challenger"][s.primary_metric] for name in EVAL_SETS}
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
            report_path=str(report_path),
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

    verdict = "passed" if result.passed else "blocked: " + ", ".join(result.failed_checks)
    context.log.info(f"validation of {version} against {champion_version or 'no champion'}: {verdict}")
    rows = [
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in c.__dict__.items()}
        for c in result.comparisons
    ]
    secondary = [
        {"set": set_name, "model": who, **{k: round(v, 4) for k, v in m.items() if v is not None}}
        for set_name, by_model in result.metrics.items()
        for who, m in by_model.items()
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
        },
        metadata={
            "verdict": verdict,
            "challenger_version": version,
            "champion_version": champion_version or "none",
            "primary_metric": s.primary_metric,
            "comparison": table(rows, COMPARISON_COLUMNS),
            "metrics": table(secondary),
            "report_path": dg.MetadataValue.path(str(report_path)),
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
