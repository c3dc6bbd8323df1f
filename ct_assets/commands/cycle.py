"""`ct-assets cycle`: ingest what has landed, then run the CT job when the retrain condition holds."""

import hashlib
import time
from typing import Any

from ct_assets.common.clock import utc_now
from ct_assets.common.heap import long_lived
from ct_assets.common.run_processes import dead_markers, ensure_dagster_home
from ct_assets.config import Settings
from ct_assets.core import alerts, registry
from ct_assets.core.ingest.pending import has_landed
from ct_assets.core.triggers.decision import retrain_decision
from ct_assets.defs.constants import CT_SELECTION, TRIGGER_TAG
from ct_assets.errors import DataError
from ct_assets.store.sql import fetch_one
from ct_assets.store.warehouse import connect_reader, connect_writer


def _ingest_counts(settings: Settings, run_id: str) -> dict[str, int]:
    """Files by status, and the labels they brought by what became of them, in one ingest run."""
    with connect_reader(settings, wait_seconds=30) as con:
        rows = con.execute(
            "SELECT status, count(*), sum(labels_attached), sum(labels_pending), sum(labels_conflict) "
            "FROM ingest_log WHERE run_id = ? GROUP BY 1",
            [run_id],
        ).fetchall()
    out = {status: int(n) for status, n, *_ in rows}
    for i, key in enumerate(("labels_attached", "labels_pending", "labels_conflict")):
        out[key] = sum(int(r[2 + i] or 0) for r in rows)
    return out


def run_cycle(settings: Settings, *, force: bool = False) -> dict[str, Any]:
    """One cycle through Dagster. Returns the JSON-able outcome; raises CtError when a run fails for a
    reason other than the gate (a blocked challenger is a correct outcome, not an error)."""
    started = time.perf_counter()
    out: dict[str, Any] = {
        "verdict": "not_triggered",
        "champion_version": None,
        "challenger_version": None,
        "failed_checks": [],
        "failed_reasons": {},
        "ingested_files": 0,
        "quarantined_files": 0,
        "duplicate_files": 0,
        "labels_attached": 0,
        "labels_pending": 0,
        "labels_conflict": 0,
        "runs": {},
    }
    check_config(settings)
    _recover_dead_runs(settings)
    _ingest(settings, out)
    out["ingest_seconds"] = round(time.perf_counter() - started, 3)
    with connect_reader(settings, wait_seconds=30) as con:
        decision = retrain_decision(con, settings)
    out["trigger"] = decision.to_json()
    if decision.should_run or force:
        if decision.newest_batch_id == 0:
            raise DataError(
                "nothing ingested yet: land files in the landing folder (or `ct-assets simulate`) first"
            )
        trigger = decision.trigger if decision.should_run and decision.trigger else "forced"
        _train(settings, out, trigger, decision.reason)
    with connect_reader(settings, wait_seconds=30) as con:
        out["champion_version"] = registry.champion(con)
    out["seconds"] = round(time.perf_counter() - started, 3)
    return out


def _recover_dead_runs(settings: Settings) -> None:
    """Runs a killed process left STARTED are failed, whether or not this cycle starts one. Dagster (a
    second or more to import and load) is needed for that only when a process that executed runs here is
    gone; a cycle with nothing to do then never loads it."""
    if dead_markers(ensure_dagster_home(settings.cluster.dagster_db if settings.cluster else None)):
        from ct_assets.commands.runs import recover

        recover()


def _ingest(settings: Settings, out: dict[str, Any]) -> None:
    """An ingest run when ready files wait in the landing folder; its file counts go into `out`."""
    if not has_landed(settings):
        return
    with long_lived():  # Dagster's import: objects that live as long as the process (common.heap)
        from ct_assets.commands.runs import failure_message, require_success, run_job

    res = run_job("ingest_job", tags={TRIGGER_TAG: "cycle"})
    out["runs"]["ingest"] = res.run_id
    if not res.success:
        _failure_alert(settings, "ingest_job", res.run_id, failure_message(res))
    require_success(res, "the ingest run")
    counts = _ingest_counts(settings, res.run_id)
    out["ingested_files"] = counts.get("ingested", 0)
    out["quarantined_files"] = counts.get("quarantined", 0)
    out["duplicate_files"] = counts.get("duplicate", 0)
    for key in ("labels_attached", "labels_pending", "labels_conflict"):
        out[key] = counts[key]


def check_config(settings: Settings) -> None:
    """Before any run: open the warehouse as a writer once, so that a config it cannot follow is refused
    in one line (store.evolution) and a new optional feature's column is added."""
    with connect_writer(settings):
        pass


def _train(settings: Settings, out: dict[str, Any], trigger: str, reason: str) -> None:
    """The CT run, and its outcome in `out`: challenger, failed checks, verdict, report."""
    # Here, not at the top: Dagster, and the gate with scipy and LightGBM, which a cycle with nothing to
    # train (or only files to ingest) never needs.
    with long_lived():
        from ct_assets.commands.runs import blocking_failures, failure_message, run_job
        from ct_assets.core.gate.evaluation import report_path

    t = time.perf_counter()
    res = run_job(
        "ct_job",
        asset_selection=CT_SELECTION,
        tags={TRIGGER_TAG: trigger, "ct_assets/reason": reason[:200]},
    )
    out["ct_seconds"] = round(time.perf_counter() - t, 3)
    out["runs"]["ct"] = res.run_id
    with connect_reader(settings, wait_seconds=30) as con:
        trained = fetch_one(con, "SELECT version FROM models WHERE run_id = ?", [res.run_id])
        validated = fetch_one(
            con, "SELECT passed, failed_checks FROM validations WHERE run_id = ?", [res.run_id]
        )
        promoted = fetch_one(
            con, "SELECT version FROM ledger WHERE run_id = ? AND action = 'promoted'", [res.run_id]
        )
    out["challenger_version"] = trained[0] if trained else None
    failed = blocking_failures(res)
    out["failed_checks"] = list(failed)
    out["failed_reasons"] = failed
    if promoted:
        out["verdict"] = "promoted"
    elif validated is not None and trained is None:
        out["verdict"] = (
            "unchanged"  # nothing changed since the champion's training: it was not trained again
        )
    elif validated is not None and not validated[0]:
        out["verdict"] = "blocked"
    elif res.success:
        out["verdict"] = "unchanged"  # the challenger equals the champion already in place
    else:
        out["verdict"] = "failed"
        out["error"] = failure_message(res)
        _failure_alert(settings, "ct_job", res.run_id, out["error"])
    if out["challenger_version"] and validated is not None:
        out["report"] = str(report_path(settings, out["challenger_version"]))


def _failure_alert(settings: Settings, job: str, run_id: str, error: str) -> None:
    """Runs executed here belong to no code location, so the daemon's failure sensor does not see them:
    the CLI raises their failure alerts itself (one per cause)."""
    alerts.raise_alert(
        settings,
        kind="failure",
        now=utc_now(),
        cause=f"failure:{job}:{hashlib.sha256(error.encode()).hexdigest()[:10]}",
        message=f"{job} run {run_id} failed: {error[:300]}",
        details={"run_id": run_id, "job": job},
    )
