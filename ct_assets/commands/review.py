"""Human review from the command line: approve and rollback go through Dagster, reject is a ledger entry."""

from typing import Any

from ct_assets.commands.runs import require_success, run_job
from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.datasets.golden import active_golden
from ct_assets.core.gate.evaluation import report_path
from ct_assets.core.modeling.model import model_dir
from ct_assets.core.monitoring import evidence
from ct_assets.core.triggers.snapshot import writer_keeping_snapshot
from ct_assets.defs.constants import TRIGGER_TAG
from ct_assets.errors import RegistryError
from ct_assets.store.sql import fetch_one
from ct_assets.store.warehouse import connect_reader, connect_writer, transaction


def change_champion(settings: Settings, action: str, version: str, reason: str) -> dict[str, Any]:
    """Approve a blocked challenger or roll back, as a run of registry_job (so the UI shows the new
    champion's materialization with the reason and the person)."""
    if not reason.strip():
        raise RegistryError(f"{action} needs a non-empty --reason")
    if version:
        model_dir(settings.paths.models, version)  # refuse anything that is not a version name at once
    # Refuse what is bound to fail before starting a run (the asset checks all of it again).
    with connect_reader(settings, wait_seconds=30) as con:
        if version and registry.model(con, version) is None:
            raise RegistryError(f"{version} is not a registered model (see `ct-assets registry list`)")
        if action == "approve":
            decision = registry.latest_decision(con, version)
            if decision is None or decision.action != "blocked":
                state = decision.action if decision else "never validated"
                raise RegistryError(f"{version} is not in the review queue (its last decision: {state})")
    res = run_job(
        "registry_job",
        tags={TRIGGER_TAG: action, "ct_assets/actor": registry.actor()},
        run_config={
            "ops": {
                "champion_model": {
                    "config": {
                        "action": action,
                        "version": version,
                        "reason": reason,
                        "actor": registry.actor(),
                    }
                }
            }
        },
    )
    require_success(res, f"registry {action}")
    with connect_reader(settings, wait_seconds=30) as con:
        entry = registry.ledger(con, limit=1)[0]
    return {
        "version": entry.champion_after,
        "previous": entry.champion_before,
        "action": entry.action,
        "run_id": res.run_id,
    }


def reject(settings: Settings, version: str, reason: str) -> registry.LedgerEntry:
    """Close a blocked challenger's review without promoting it (the champion does not change)."""
    if not reason.strip():
        raise RegistryError("reject needs a non-empty --reason")
    model_dir(settings.paths.models, version)
    with connect_writer(settings) as con, transaction(con):
        decision = registry.latest_decision(con, version)
        if decision is None or decision.action != "blocked":
            state = decision.action if decision else "never validated"
            raise RegistryError(f"{version} is not in the review queue (its last decision: {state})")
        return registry.record(
            con,
            action="rejected",
            version=version,
            champion_after=registry.champion(con),
            now=utc_now(),
            data_hash=decision.data_hash,
            metrics=decision.metrics,
            verdict="rejected",
            reason=reason,
        )


def batch_decision(settings: Settings, action: str, batch_id: int, reason: str) -> dict[str, Any]:
    """A person releases a held-back or excluded batch (it is trained on again) or excludes one; one
    decision row and one ledger row, in one transaction."""
    now, who = utc_now(), registry.actor()
    with writer_keeping_snapshot(settings) as con, transaction(con):
        d = evidence.decide_by_person(con, batch_id, action, reason, who=who, now=now)
        registry.record(
            con,
            action=f"batch_{d.status}",
            version=None,
            champion_after=registry.champion(con),
            now=now,
            reason=reason,
            metrics={"batch_id": batch_id},
            who=who,
        )
    return {"batch_id": batch_id, "status": d.status, "actor": who}


def batch_listing(settings: Settings) -> list[dict[str, Any]]:
    """Every judged batch with its latest decision, newest first."""
    with connect_reader(settings, wait_seconds=20) as con:
        return evidence.latest(con)


def report_of(settings: Settings, version: str | None) -> str:
    """The HTML report of a version (default: the newest validation)."""
    if version is not None:
        model_dir(settings.paths.models, version)  # a version name, never a path
    with connect_reader(settings, wait_seconds=30) as con:
        if version is None:
            row = fetch_one(
                con, "SELECT challenger_version FROM validations ORDER BY created_at DESC LIMIT 1"
            )
            if row is None:
                raise RegistryError("no validation yet: run `ct-assets cycle` first")
            version = str(row[0])
        elif registry.latest_validation(con, version) is None:
            raise RegistryError(f"{version} has no validation report")
    path = report_path(settings, version)
    if not path.is_file():
        raise RegistryError(f"the report of {version} is missing: {path}")
    return str(path)


def rebuild_golden(settings: Settings, reason: str) -> dict[str, Any]:
    """Rebuild the frozen golden set through Dagster; the ledger records old and new hashes."""
    if not reason.strip():
        raise RegistryError("golden rebuild needs a non-empty --reason")
    with connect_reader(settings, wait_seconds=30) as con:
        old = active_golden(con)
    res = run_job(
        "golden_job",
        tags={TRIGGER_TAG: "golden_rebuild", "ct_assets/actor": registry.actor()},
        run_config={"ops": {"golden_dataset": {"config": {"rebuild": True, "reason": reason}}}},
    )
    require_success(res, "golden rebuild")
    with connect_reader(settings, wait_seconds=30) as con:
        new = active_golden(con)
    assert new is not None
    return {
        "old": old.golden_hash if old else None,
        "new": new.golden_hash,
        "rows": new.rows,
        "run_id": res.run_id,
    }
