"""Human review from the command line: approve and rollback go through Dagster, reject is a ledger entry."""

from typing import Any

from ct_assets.cli.runs import require_success, run_job
from ct_assets.config import Settings
from ct_assets.errors import RegistryError
from ct_assets.jobs import TRIGGER_TAG
from ct_assets.lib import registry
from ct_assets.lib.ingest import utc_now
from ct_assets.lib.model import model_dir
from ct_assets.lib.warehouse import connect_reader, connect_writer, transaction


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
