"""Registry: the champion, changed only by a gated promotion, a person's approval, or a rollback."""

import dagster as dg

from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.registry.actions import ChampionChange, Request, change_champion
from ct_assets.defs.assets.validation import BLOCKING_CHECKS
from ct_assets.defs.constants import REGISTRY
from ct_assets.defs.metadata import table
from ct_assets.defs.resources import SettingsResource


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


@dg.asset(
    group_name=REGISTRY,
    kinds={"duckdb"},
    # Its FreshnessPolicy comes from [retrain] max_champion_age_hours when the definitions are built
    # (defs/policies.py).
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
    req = Request(
        config.action, validation_report, config.version, config.reason, config.actor, context.run_id
    )
    change = change_champion(s, req, lambda run_id, v: blocking_checks_passed(context.instance, run_id, v))
    entry = change.entry
    text = (
        f"{entry.action} {entry.version}"
        if entry
        else f"unchanged ({change.champion} is already the champion)"
    )
    context.log.info(f"champion: {change.champion} ({text})")
    return dg.Output(
        {"version": change.champion, "previous": change.before, "action": change.action},
        data_version=dg.DataVersion(change.champion),
        metadata=_champion_metadata(s, change, config.actor or registry.actor()),
    )


LEDGER_COLUMNS = [
    "entry_id",
    "recorded_at",
    "action",
    "version",
    "champion_before",
    "champion_after",
    "verdict",
    "reason",
    "actor",
]


def _champion_metadata(s: Settings, change: ChampionChange, who: str) -> dict:
    entry = change.entry
    folder = lgbm.model_dir(s.paths.models, change.champion)
    return {
        "champion_version": change.champion,
        "previous_champion": change.before or "none",
        "action": change.action,
        "reason": (entry.reason if entry else "") or "",
        "actor": who,
        "model_path": dg.MetadataValue.path(str(folder / lgbm.MODEL_FILE)),
        "data_hash": (entry.data_hash if entry else "") or "",
        "ledger": table(
            [{k: v for k, v in h.items() if k != "metrics"} for h in change.history], LEDGER_COLUMNS
        ),
    }
