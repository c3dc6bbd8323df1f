"""Registry: the champion, changed only by a gated promotion, a person's approval, or a rollback."""

import math
from datetime import timedelta
from typing import Any

import dagster as dg

from ct_assets.common import failpoints
from ct_assets.common.clock import utc_now
from ct_assets.core import registry
from ct_assets.core.datasets.golden import active_golden, read_golden
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.modeling.metrics import all_metrics
from ct_assets.core.triggers.snapshot import writer_keeping_snapshot
from ct_assets.defs.assets.validation import BLOCKING_CHECKS
from ct_assets.defs.constants import REGISTRY
from ct_assets.defs.metadata import table
from ct_assets.defs.resources import SettingsResource
from ct_assets.errors import RegistryError
from ct_assets.store.warehouse import transaction

ACTIONS = ("promote", "approve", "rollback")


class RegistryConfig(dg.Config):
    """What this materialization does: promote the validated challenger (the CT job's default), or a
    person's `approve` of a blocked version or `rollback` (to `version`, or to the previous champion)."""

    action: str = "promote"
    version: str = ""
    reason: str = ""
    actor: str = ""


def blocking_checks_passed(instance: dg.DagsterInstance, report_run_id: str, version: str) -> list[str]:
    """Names of the blocking checks that did NOT pass for this challenger's report, read from the
    Dagster instance's event log (empty list: all passed)."""
    problems = []
    keys = {name: dg.AssetCheckKey(dg.AssetKey("validation_report"), name) for name in BLOCKING_CHECKS}
    # One query for the latest evaluation of every check: in the CT run that is the report's own run.
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(keys.values()))
    for name, key in keys.items():
        record = latest.get(key)
        if record is None or record.run_id != report_run_id:  # a later run evaluated it: look further back
            records = instance.event_log_storage.get_asset_check_execution_history(key, limit=200)
            record = next((r for r in records if r.run_id == report_run_id), None)
        evaluation = record.evaluation if record is not None else None
        if record is None or evaluation is None:
            problems.append(f"{name} (no result in run {report_run_id})")
            continue
        seen = evaluation.metadata.get("challenger_version")
        seen_version = getattr(seen, "value", seen)
        if record.status.value != "SUCCEEDED" or not evaluation.passed:
            problems.append(name)
        elif seen_version != version:
            problems.append(f"{name} (evaluated {seen_version}, not {version})")
    return problems


def _golden_metrics(s, con, loaded: lgbm.LoadedModel) -> dict[str, Any]:
    golden = active_golden(con)
    if golden is None:
        return {}
    frame = read_golden(con, s, golden.golden_hash)
    m = all_metrics(lgbm.labels(frame, s), loaded.predict(frame), s.decision_threshold)
    return {"golden_hash": golden.golden_hash, **{f"golden_{k}": round(v, 6) for k, v in m.items()}}


@dg.asset(
    group_name=REGISTRY,
    kinds={"duckdb"},
    code_version="1",
    # Shown in the UI: a champion older than the default [retrain] max_champion_age_hours is stale.
    freshness_policy=dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=168), warn_window=timedelta(hours=48)
    ),
)
def champion_model(
    context: dg.AssetExecutionContext,
    config: RegistryConfig,
    settings: SettingsResource,
    validation_report: dict | None,
) -> dg.Output:
    """The registry's champion. Promotes the validated challenger only after verifying, in this Dagster
    instance, that every blocking check of its report passed; materializing this asset alone after a
    failed gate cannot promote. Approvals and rollbacks by a person also land here, recorded in the
    append-only ledger with who, when and why."""
    s = settings.load()
    if config.action not in ACTIONS:
        raise RegistryError(
            f"unknown registry action {config.action!r}; expected one of {', '.join(ACTIONS)}"
        )
    now = utc_now()
    who = config.actor or registry.actor()
    with writer_keeping_snapshot(s) as con, transaction(con):
        before = registry.champion(con)
        if config.action == "promote":
            entry = _promote(context, con, validation_report, before, now, who)
        elif config.action == "approve":
            entry = _approve(s, con, config, now, who, context.run_id)
        else:
            entry = _rollback(s, con, config, before, now, who, context.run_id)
        champion = registry.champion(con)
        history = [e.to_json() for e in registry.ledger(con, limit=10)]
        failpoints.hit("promote.before_commit")
    failpoints.hit("promote.after_commit")
    if champion is None:
        raise RegistryError("no champion after this step")
    folder = lgbm.model_dir(s.paths.models, champion)
    text = f"{entry.action} {entry.version}" if entry else f"unchanged ({champion} is already the champion)"
    context.log.info(f"champion: {champion} ({text})")
    return dg.Output(
        {"version": champion, "previous": before, "action": entry.action if entry else "unchanged"},
        data_version=dg.DataVersion(champion),
        metadata={
            "champion_version": champion,
            "previous_champion": before or "none",
            "action": entry.action if entry else "unchanged",
            "reason": (entry.reason if entry else "") or "",
            "actor": who,
            "model_path": dg.MetadataValue.path(str(folder / lgbm.MODEL_FILE)),
            "data_hash": (entry.data_hash if entry else "") or "",
            "ledger": table(
                [{k: v for k, v in h.items() if k != "metrics"} for h in history],
                [
                    "entry_id",
                    "recorded_at",
                    "action",
                    "version",
                    "champion_before",
                    "champion_after",
                    "verdict",
                    "reason",
                    "actor",
                ],
            ),
        },
    )


def _promote(
    context, con, report: dict | None, before: str | None, now, who: str
) -> registry.LedgerEntry | None:
    if not report:
        raise RegistryError("no validation report to promote from: materialize validation_report first")
    version = report["challenger_version"]
    if version == before:
        return None
    failed = blocking_checks_passed(context.instance, report["run_id"], version)
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
    return registry.record(
        con,
        action="promoted",
        version=version,
        champion_after=version,
        now=now,
        data_hash=report.get("dataset_hash"),
        metrics=report.get("challenger_primary") or {},
        verdict="passed",
        reason="all blocking checks passed",
        run_id=context.run_id,
        who=who,
    )


def _approve(s, con, config: RegistryConfig, now, who: str, run_id: str) -> registry.LedgerEntry:
    version = config.version
    if not config.reason.strip():
        raise RegistryError("approve needs --reason")
    lgbm.load_version(s.paths.models, version)  # refuses paths outside the models folder, checks the files
    decision = registry.latest_decision(con, version)
    if decision is None or decision.action != "blocked":
        state = decision.action if decision else "never validated"
        raise RegistryError(f"{version} is not in the review queue (its last decision: {state})")
    rec = registry.model(con, version)
    return registry.record(
        con,
        action="approved",
        version=version,
        champion_after=version,
        now=now,
        data_hash=rec.dataset_hash if rec else None,
        metrics=decision.metrics,
        verdict="override",
        reason=config.reason,
        run_id=run_id,
        who=who,
    )


def _rollback(
    s, con, config: RegistryConfig, before: str | None, now, who: str, run_id: str
) -> registry.LedgerEntry:
    if not config.reason.strip():
        raise RegistryError("rollback needs --reason")
    target = config.version or registry.rollback_target(con)
    if target is None:
        raise RegistryError(f"nothing to roll back to: {before or 'no model'} is the only champion so far")
    if target == before:
        raise RegistryError(f"{target} is already the champion")
    if registry.model(con, target) is None:
        raise RegistryError(f"{target} is not a registered model")
    loaded = lgbm.load_version(s.paths.models, target)  # load and score before re-pointing
    metrics = _golden_metrics(s, con, loaded)
    value = metrics.get(f"golden_{s.primary_metric}")
    if metrics and (value is None or not math.isfinite(value)):
        raise RegistryError(f"{target} cannot be scored on the golden set ({s.primary_metric} = {value})")
    rec = registry.model(con, target)
    return registry.record(
        con,
        action="rolled_back",
        version=target,
        champion_after=target,
        now=now,
        data_hash=rec.dataset_hash if rec else None,
        metrics=metrics,
        verdict="rollback",
        reason=config.reason,
        run_id=run_id,
        who=who,
    )
