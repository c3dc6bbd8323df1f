"""`ct-assets status` and `ct-assets registry list`: read-only views of the warehouse."""

import json
from datetime import UTC, datetime
from typing import Any

from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core import alerts, registry
from ct_assets.core.datasets.golden import active_golden
from ct_assets.core.ingest import landing
from ct_assets.core.ingest.labels import OPEN_PENDING
from ct_assets.core.triggers.decision import retrain_decision
from ct_assets.core.triggers.freshness import freshness
from ct_assets.errors import CtError
from ct_assets.store.sql import fetch_one, quote
from ct_assets.store.warehouse import connect_reader

READ_WAIT_SECONDS = 20.0  # a reader waits this long for a writer to finish before giving up


def _iso(x: datetime | None) -> str | None:
    return x.isoformat(sep=" ", timespec="seconds") if x else None


def status(settings: Settings) -> dict[str, Any]:
    """Champion, its metrics, rows since its training, data lag, last verdict, pending files, review queue."""
    now = utc_now()
    pending = landing.ready_files(settings.paths.landing)
    with connect_reader(settings, wait_seconds=READ_WAIT_SECONDS) as con:
        champion = registry.champion(con)
        rows_total, rows_labelled = fetch_one(
            con, f"SELECT count(*), count({quote(settings.columns.label)}) FROM raw_deltas"
        ) or (0, 0)
        late = late_labels(con)
        decision = retrain_decision(con, settings)
        fr = freshness(con, settings, now, [f.landed_at for f in pending])
        last = registry.last_verdict(con)
        queue = registry.review_queue(con)
        golden = active_golden(con)
        open_alerts = alerts.open_alerts(con)
        champ_info: dict[str, Any] | None = None
        if champion:
            rec = registry.model(con, champion)
            made = next(
                (
                    e
                    for e in registry.ledger(con)
                    if e.champion_after == champion
                    and e.action in registry.CHAMPION_ACTIONS
                    and e.version == champion
                ),
                None,
            )
            champ_info = {
                "version": champion,
                "trained_at": _iso(rec.created_at) if rec else None,
                "data_hash": rec.dataset_hash if rec else None,
                "rows_train": rec.n_train if rec else None,
                "since": _iso(made.recorded_at) if made else None,
                "how": made.action if made else None,
                "metrics": (made.metrics if made else {}) or {},
            }
    return {
        "champion_version": champion,
        "champion": champ_info,
        "rows_total": int(rows_total),
        "rows_labelled": int(rows_labelled) + late["attached"],  # with the labels attached late
        "labels_attached": late["attached"],
        "labels": late,
        "rows_since_training": decision.rows_since_training,
        "retrain_threshold": decision.threshold,
        "retrain_due": decision.should_run,
        "retrain_reason": decision.reason,
        "retrain_trigger": decision.trigger,
        "retrain_waiting_until": decision.to_json()["waiting_until"],
        "triggers": decision.signals,
        "data_lag_hours": round(fr.data_lag_hours, 3) if fr.data_lag_hours is not None else None,
        "newest_file_age_hours": round(fr.file_age_hours, 3) if fr.file_age_hours is not None else None,
        "last_verdict": last.action if last else None,
        "last_decision": last.to_json() if last else None,
        "pending_files": len(pending),
        "review_queue": [
            {"version": e.version, "blocked_at": _iso(e.recorded_at), "reason": e.reason} for e in queue
        ],
        "golden_hash": golden.golden_hash if golden else None,
        "open_alerts": [{**a, "raised_at": _iso(a["raised_at"])} for a in open_alerts],
        "warehouse": str(settings.paths.warehouse),
    }


def late_labels(con: Any) -> dict[str, Any]:
    """Labels that arrived apart from their rows (label_events): attached, still pending (no row with that
    id yet), conflicting (a second, different label: the first stays), duplicate; and the delay of those
    attached, their label time (else their arrival) minus the row's event time, in hours."""
    row = fetch_one(
        con,
        "SELECT count(*) FILTER (WHERE status = 'attached'), count(*) FILTER (WHERE status = 'conflict'), "
        "count(*) FILTER (WHERE status = 'duplicate'), "
        "quantile_cont(delay_seconds, [0.5, 0.9]) FILTER (WHERE status = 'attached'), "
        "max(delay_seconds) FILTER (WHERE status = 'attached') FROM label_events",
    ) or (0, 0, 0, None, None)
    pending = fetch_one(con, f"SELECT count(*) FROM ({OPEN_PENDING})") or (0,)
    q = row[3] or [None, None]

    def hours(x: float | None) -> float | None:
        return None if x is None else round(float(x) / 3600, 3)

    return {
        "attached": int(row[0] or 0),
        "pending": int(pending[0] or 0),
        "conflict": int(row[1] or 0),
        "duplicate": int(row[2] or 0),
        "delay_hours": {"median": hours(q[0]), "p90": hours(q[1]), "max": hours(row[4])},
    }


def parse_time(text: str) -> datetime:
    """A past time given on the command line (ISO 8601; naive means UTC)."""
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise CtError(f"--at {text!r} is not an ISO 8601 time (e.g. 2026-11-27T10:00)") from None
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def registry_listing(settings: Settings, at: str | None = None) -> dict[str, Any]:
    """Every model with its state, the review queue and the recent ledger (and the champion at `at`)."""
    when = parse_time(at) if at else None
    with connect_reader(settings, wait_seconds=READ_WAIT_SECONDS) as con:
        champion = registry.champion(con)
        champion_at = registry.champion(con, at=when) if when else None
        models = registry.models(con)
        entries = registry.ledger(con)
        queue = {e.version for e in registry.review_queue(con)}
        validations = {
            r[0]: (r[1], r[2])
            for r in con.execute(
                "SELECT challenger_version, passed, summary FROM validations ORDER BY created_at"
            ).fetchall()
        }
    latest: dict[str, str] = {}
    for e in reversed(entries):
        if e.version:
            latest[e.version] = e.action
    rows = []
    for m in models:
        passed, summary = validations.get(m.version, (None, None))
        metrics = json.loads(summary) if summary else {}
        golden = (metrics.get("golden", {}).get("challenger", {}) or {}).get(settings.primary_metric)
        state = (
            "champion"
            if m.version == champion
            else ("in review" if m.version in queue else latest.get(m.version, "trained"))
        )
        rows.append(
            {
                "version": m.version,
                "state": state,
                "created_at": _iso(m.created_at),
                "data_hash": m.dataset_hash,
                "rows_train": m.n_train,
                f"golden_{settings.primary_metric}": golden,
                "gate": None if passed is None else ("passed" if passed else "blocked"),
            }
        )
    return {
        "champion_version": champion,
        "at": _iso(when),
        "champion_at": champion_at,
        "models": rows,
        "review_queue": sorted(queue),
        "ledger": [e.to_json() for e in entries[:20]],
    }
