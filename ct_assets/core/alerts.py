"""Alerts: a row in the warehouse, a log line, and (when configured) a JSON POST to a webhook.

Kinds: `block` (the gate stopped a challenger: a decision, not a fault), `failure` (a run failed for
another reason), `freshness` (files stopped landing or the champion's data lag passed its limit).
An alert is not repeated for the same cause while it is open: blocks are one cause per challenger,
freshness causes close when the check passes again, failure causes close after
FAILURE_REPEAT_HOURS (or when closed explicitly).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ct_assets.config import Settings
from ct_assets.store.sql import fetch_one, next_id
from ct_assets.store.warehouse import connect_writer, transaction

LOG = logging.getLogger("ct_assets.alerts")
KINDS = ("block", "failure", "freshness", "data")
FAILURE_REPEAT_HOURS = 24.0
WEBHOOK_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Alert:
    alert_id: int
    raised_at: datetime
    kind: str
    cause: str
    message: str
    details: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "raised_at": self.raised_at.isoformat(),
            "kind": self.kind,
            "cause": self.cause,
            "message": self.message,
            "details": self.details,
            "source": "ct_assets",
        }


def _open_alert(con, cause: str, now: datetime) -> bool:
    row = fetch_one(
        con,
        "SELECT raised_at, kind FROM alerts WHERE cause = ? AND resolved_at IS NULL "
        "ORDER BY alert_id DESC LIMIT 1",
        [cause],
    )
    if row is None:
        return False
    raised_at, kind = row
    return not (kind == "failure" and now - raised_at > timedelta(hours=FAILURE_REPEAT_HOURS))


def record(
    con, *, kind: str, cause: str, message: str, details: dict[str, Any] | None, now: datetime
) -> Alert | None:
    """Insert an alert unless one with the same cause is open (caller holds the writer lock)."""
    if kind not in KINDS:
        raise ValueError(kind)
    if _open_alert(con, cause, now):
        return None
    alert = Alert(next_id(con, "alerts", "alert_id"), now, kind, cause, message, details or {})
    con.execute(
        "INSERT INTO alerts (alert_id, raised_at, kind, cause, message, details, delivered) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [alert.alert_id, now, kind, cause, message, json.dumps(alert.details, default=str), "pending"],
    )
    return alert


def has_open(con, cause_prefix: str) -> bool:
    """Whether an alert whose cause starts with `cause_prefix` is open."""
    rows = con.execute(
        "SELECT 1 FROM alerts WHERE resolved_at IS NULL AND starts_with(cause, ?) LIMIT 1", [cause_prefix]
    ).fetchall()
    return bool(rows)


def resolve(con, cause_prefix: str, now: datetime) -> int:
    """Close the open alerts whose cause starts with `cause_prefix`; returns how many."""
    rows = con.execute(
        "SELECT alert_id FROM alerts WHERE resolved_at IS NULL AND starts_with(cause, ?)", [cause_prefix]
    ).fetchall()
    if rows:
        con.execute(
            "UPDATE alerts SET resolved_at = ? WHERE resolved_at IS NULL AND starts_with(cause, ?)",
            [now, cause_prefix],
        )
    return len(rows)


def deliver(alert: Alert, webhook_url: str) -> str:
    """POST the alert as JSON when a webhook is configured; returns what happened, for the record."""
    if not webhook_url:
        return "no webhook configured"
    body = json.dumps(alert.payload(), default=str).encode()
    req = urllib.request.Request(
        webhook_url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "ct-assets"},
    )
    try:
        with urllib.request.urlopen(req, timeout=WEBHOOK_TIMEOUT_SECONDS) as resp:
            return f"sent (HTTP {resp.status})"
    except (urllib.error.URLError, OSError, ValueError) as e:
        return f"webhook failed: {str(e)[:200]}"


def raise_alert(
    settings: Settings,
    *,
    kind: str,
    cause: str,
    message: str,
    details: dict[str, Any] | None = None,
    now: datetime,
    logger: Any = None,
) -> Alert | None:
    """Record, log and deliver one alert (nothing when the same cause is already open).

    The webhook is called after the row is committed, outside the writer lock."""
    with connect_writer(settings) as con, transaction(con):
        alert = record(con, kind=kind, cause=cause, message=message, details=details, now=now)
    if alert is None:
        return None
    (logger or LOG).warning(f"ALERT [{kind}] {message}")
    status = deliver(alert, settings.webhook_url)
    with connect_writer(settings) as con:
        con.execute("UPDATE alerts SET delivered = ? WHERE alert_id = ?", [status, alert.alert_id])
    return alert


def close_alerts(settings: Settings, cause_prefix: str, now: datetime) -> int:
    with connect_writer(settings) as con, transaction(con):
        return resolve(con, cause_prefix, now)


def open_alerts(con) -> list[dict[str, Any]]:
    rows = con.execute(
        "SELECT alert_id, raised_at, kind, cause, message, delivered FROM alerts "
        "WHERE resolved_at IS NULL ORDER BY alert_id"
    ).fetchall()
    keys = ("alert_id", "raised_at", "kind", "cause", "message", "delivered")
    return [dict(zip(keys, r, strict=True)) for r in rows]
