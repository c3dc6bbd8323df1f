"""Changing the champion: a gated promotion, a person's approval of a blocked challenger, a rollback.

Each is one ledger row written in one transaction, with who, when and why. What the `champion_model`
asset runs; the asset supplies what only Dagster knows (whether the report's blocking checks passed).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb

from ct_assets.common import failpoints
from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core.datasets.golden import active_golden, read_golden
from ct_assets.core.gate.comparable import scorable_by
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.modeling import shared
from ct_assets.core.modeling.metrics import all_metrics
from ct_assets.core.registry import records
from ct_assets.core.triggers.snapshot import writer_keeping_snapshot
from ct_assets.errors import RegistryError
from ct_assets.store.warehouse import transaction

ACTIONS = ("promote", "approve", "rollback")
# (report run id, challenger version) -> names of the report's blocking checks that did not pass
FailedChecks = Callable[[str, str], list[str]]


@dataclass
class ChampionChange:
    """What one registry action did: the champion before and after, and its ledger row (None: the
    challenger already was the champion)."""

    before: str | None
    champion: str
    entry: records.LedgerEntry | None
    history: list[dict[str, Any]] = field(default_factory=list)  # the newest ledger rows

    @property
    def action(self) -> str:
        return self.entry.action if self.entry else "unchanged"


@dataclass(frozen=True)
class Request:
    """A registry action: `promote` the validated challenger of `report`, or a person's `approve` of
    `version` or `rollback` (to `version`, or to the previous champion), with a reason."""

    action: str
    report: dict[str, Any] | None = None
    version: str = ""
    reason: str = ""
    who: str = ""
    run_id: str = ""


def change_champion(s: Settings, req: Request, failed_checks: FailedChecks) -> ChampionChange:
    """Apply one registry action in one transaction; raises RegistryError (one line) when refused."""
    if req.action not in ACTIONS:
        raise RegistryError(f"unknown registry action {req.action!r}; expected one of {', '.join(ACTIONS)}")
    now = utc_now()
    who = req.who or records.actor()
    with writer_keeping_snapshot(s) as con, transaction(con):
        before = records.champion(con)
        if req.action == "promote":
            entry = _promote(con, req, before, now, who, failed_checks)
        elif req.action == "approve":
            entry = _approve(s, con, req, now, who)
        else:
            entry = _rollback(s, con, req, before, now, who)
        champion = records.champion(con)
        history = [e.to_json() for e in records.ledger(con, limit=10)]
        failpoints.hit("promote.before_commit")
    failpoints.hit("promote.after_commit")
    if champion is None:
        raise RegistryError("no champion after this step")
    return ChampionChange(before, champion, entry, history)


def _promote(
    con: duckdb.DuckDBPyConnection,
    req: Request,
    before: str | None,
    now: datetime,
    who: str,
    failed_checks: FailedChecks,
) -> records.LedgerEntry | None:
    report = req.report
    if not report:
        raise RegistryError("no validation report to promote from: materialize validation_report first")
    version = report["challenger_version"]
    if version == before:
        return None
    failed = failed_checks(report["run_id"], version)
    if failed:
        raise RegistryError(
            f"refusing to promote {version}: blocking checks not passed in run "
            f"{report['run_id']}: {', '.join(failed)}"
        )
    if report.get("champion_version") != before:
        raise RegistryError(
            f"refusing to promote {version}: it was validated against {report.get('champion_version') or 'no champion'}"
            f", but the champion is now {before}; run the CT job again"
        )
    return records.record(
        con,
        action="promoted",
        version=version,
        champion_after=version,
        now=now,
        data_hash=report.get("dataset_hash"),
        metrics=report.get("challenger_primary") or {},
        verdict="passed",
        reason="all blocking checks passed",
        run_id=req.run_id,
        who=who,
    )


def _approve(
    s: Settings, con: duckdb.DuckDBPyConnection, req: Request, now: datetime, who: str
) -> records.LedgerEntry:
    version = req.version
    if not req.reason.strip():
        raise RegistryError("approve needs --reason")
    shared.load(s, version)  # refuses paths outside the models folder, checks the files
    decision = records.latest_decision(con, version)
    if decision is None or decision.action != "blocked":
        state = decision.action if decision else "never validated"
        raise RegistryError(f"{version} is not in the review queue (its last decision: {state})")
    rec = records.model(con, version)
    return records.record(
        con,
        action="approved",
        version=version,
        champion_after=version,
        now=now,
        data_hash=rec.dataset_hash if rec else None,
        metrics=decision.metrics,
        verdict="override",
        reason=req.reason,
        run_id=req.run_id,
        who=who,
    )


def _rollback(
    s: Settings, con: duckdb.DuckDBPyConnection, req: Request, before: str | None, now: datetime, who: str
) -> records.LedgerEntry:
    if not req.reason.strip():
        raise RegistryError("rollback needs --reason")
    target = req.version or records.rollback_target(con)
    if target is None:
        raise RegistryError(f"nothing to roll back to: {before or 'no model'} is the only champion so far")
    if target == before:
        raise RegistryError(f"{target} is already the champion")
    if records.model(con, target) is None:
        raise RegistryError(f"{target} is not a registered model")
    loaded = shared.load(s, target)  # load and score before re-pointing
    metrics = _golden_metrics(s, con, loaded)
    value = metrics.get(f"golden_{s.primary_metric}")
    if metrics.get("golden_rows_scored") and (value is None or not math.isfinite(value)):
        raise RegistryError(f"{target} cannot be scored on the golden set ({s.primary_metric} = {value})")
    rec = records.model(con, target)
    return records.record(
        con,
        action="rolled_back",
        version=target,
        champion_after=target,
        now=now,
        data_hash=rec.dataset_hash if rec else None,
        metrics=metrics,
        verdict="rollback",
        reason=req.reason,
        run_id=req.run_id,
        who=who,
    )


def _golden_metrics(s: Settings, con: duckdb.DuckDBPyConnection, loaded: lgbm.LoadedModel) -> dict[str, Any]:
    """The target scored on the active golden set's rows stored with every feature it uses (a model from
    before a feature was removed, or after one was added, is not judged on rows that never had it)."""
    golden = active_golden(con)
    if golden is None:
        return {}
    frame = scorable_by(con, read_golden(con, s, golden.golden_hash, with_batch_ids=True), loaded)
    out: dict[str, Any] = {"golden_hash": golden.golden_hash, "golden_rows_scored": frame.height}
    if frame.height:
        m = all_metrics(lgbm.labels(frame, s), loaded.predict(frame), s.decision_threshold)
        out.update({f"golden_{k}": round(v, 6) for k, v in m.items()})
    return out
