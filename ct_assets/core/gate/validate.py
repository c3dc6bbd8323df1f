"""One validation of a challenger, end to end: both models scored on the evaluation sets, the gate, the
report files, and the verdict recorded (validations table; a block also in the ledger, with an alert).

What the `validation_report` asset runs; it only adds Dagster's view of the outcome (metadata, checks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ct_assets.common import failpoints
from ct_assets.common.clock import utc_now
from ct_assets.common.stopwatch import Stopwatch
from ct_assets.config import Settings
from ct_assets.core import alerts, registry
from ct_assets.core.datasets.training import DatasetInfo
from ct_assets.core.gate import comparable, evaluation
from ct_assets.core.gate.results import GateResult
from ct_assets.core.gate.rule import evaluate
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.modeling import shared
from ct_assets.store.warehouse import connect_writer, transaction


@dataclass
class Validation:
    """The outcome of one validation and what it was made from."""

    version: str
    champion_version: str | None
    result: GateResult
    meta: dict[str, Any]  # versions, hashes, times, importance movers: what the report shows
    files: evaluation.ReportFiles
    primary: dict[str, float]  # the challenger's primary metric on each evaluation set
    data: evaluation.EvalData
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "passed" if self.result.passed else "blocked: " + ", ".join(self.result.failed_checks)

    def handoff(self, run_id: str, ds: DatasetInfo, primary_metric: str) -> dict[str, Any]:
        """What the validation hands to the promotion step (a small JSON document)."""
        return {
            "challenger_version": self.version,
            "champion_version": self.champion_version,
            "passed": self.result.passed,
            "failed_checks": self.result.failed_checks,
            "run_id": run_id,
            "dataset_hash": ds.dataset_hash,
            "golden_hash": ds.golden_hash,
            "primary_metric": primary_metric,
            "challenger_primary": self.primary,
            "report_path": str(self.files.html),
        }


def validate_challenger(
    s: Settings, ds: DatasetInfo, version: str, *, run_id: str, logger: logging.Logger | Any | None = None
) -> Validation:
    """Score the challenger `version` and the current champion on the golden set and the recent holdout
    of `ds`, apply the gate, write the report, and record the verdict."""
    watch = Stopwatch()
    challenger = shared.load(s, version)
    with connect_writer(s) as con:
        champion_version = registry.champion(con)
        champion = shared.load(s, champion_version) if champion_version else None
        watch.lap("load models")
        data = evaluation.eval_sets(s, con, ds, challenger, champion)
        watch.lap("read and score")
    result = evaluate(s, data.sets)
    watch.lap("gate")
    now = utc_now()
    meta = _meta(s, ds, version, champion_version, run_id, now, data, challenger, champion)
    files = evaluation.write_report(s, result, data.sets, meta)
    watch.lap("report")
    primary = {name: result.metrics[name]["challenger"][s.primary_metric] for name in evaluation.EVAL_SETS}
    v = Validation(version, champion_version, result, meta, files, primary, data)
    failpoints.hit("validate.before_ledger")
    _record(s, ds, v, run_id, now)
    if not result.passed and version != champion_version:  # the champion against itself blocks nothing
        _alert_block(s, v, now, logger)
    watch.lap("ledger and alerts")
    v.seconds = watch.seconds
    return v


def _meta(
    s: Settings,
    ds: DatasetInfo,
    version: str,
    champion_version: str | None,
    run_id: str,
    now: Any,
    data: evaluation.EvalData,
    challenger: lgbm.LoadedModel,
    champion: lgbm.LoadedModel | None,
) -> dict[str, Any]:
    return {
        "challenger_version": version,
        "champion_version": champion_version,
        "run_id": run_id,
        "created_at": now.isoformat(sep=" ", timespec="seconds"),
        "dataset_hash": ds.dataset_hash,
        "train_hash": ds.train_hash,
        "holdout_hash": ds.holdout_hash,
        "golden_hash": ds.golden_hash,
        "holdout_compared": evaluation.holdout_note(data.sets, ds),
        "golden_compared": evaluation.golden_note(data.sets),
        "features_only_one_model_uses": ", ".join(comparable.differing_features([challenger, champion]))
        or "none",
        "champion_scores_reused": f"{data.champion_scores_reused:,} of {data.rows:,} rows"
        if champion
        else "no champion",
        "challenger_data_hash": challenger.card.get("data_hash"),
        "champion_data_hash": champion.card.get("data_hash") if champion else None,
        "code_version": challenger.card.get("code_version"),
        "importance_movers": evaluation.importance_movers(challenger, champion),
    }


def _record(s: Settings, ds: DatasetInfo, v: Validation, run_id: str, now: Any) -> None:
    """The validation row, and for a blocked challenger its `blocked` ledger row (the review queue)."""
    result = v.result
    with connect_writer(s) as con, transaction(con):
        registry.record_validation(
            con,
            challenger=v.version,
            champion=v.champion_version,
            now=now,
            passed=result.passed,
            failed_checks=result.failed_checks,
            summary=result.metrics,
            golden_hash=ds.golden_hash,
            dataset_hash=ds.dataset_hash,
            report_path=str(v.files.html),
            run_id=run_id,
        )
        if not result.passed and v.version != v.champion_version:
            registry.record(
                con,
                action="blocked",
                version=v.version,
                champion_after=v.champion_version,
                now=now,
                data_hash=ds.dataset_hash,
                metrics=v.primary,
                verdict="blocked",
                reason="failed " + ", ".join(result.failed_checks),
                run_id=run_id,
            )


def _alert_block(s: Settings, v: Validation, now: Any, logger: Any) -> None:
    """A block is a decision, not a fault: one `block` alert per blocked challenger."""
    failed = v.result.failed_checks
    first = v.result.checks[failed[0]].summary
    alerts.raise_alert(
        s,
        kind="block",
        cause=f"block:{v.version}",
        now=now,
        logger=logger,
        message=f"gate blocked challenger {v.version} (champion stays {v.champion_version}): "
        f"{', '.join(failed)}; {first}",
        details={
            "challenger": v.version,
            "champion": v.champion_version,
            "failed_checks": failed,
            "report": str(v.files.html),
        },
    )
