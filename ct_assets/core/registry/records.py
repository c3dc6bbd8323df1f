"""The model registry: trained models, validations, and the append-only ledger that names the champion.

Every decision is one ledger row (blocked, promoted, approved, rejected, rolled_back; and about data:
golden_rebuilt, golden_refreshed, batch_excluded, batch_released)
carrying the champion before and after it, so the champion at any past time is the `champion_after`
of the last row recorded at or before that time. Rows are only ever inserted.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

from ct_assets.store.sql import fetch_one, fetch_value, next_id

CHAMPION_ACTIONS = ("promoted", "approved", "rolled_back")
# Decisions on a challenger or the champion; the other ledger rows are about data (golden_rebuilt,
# golden_refreshed, batch_excluded, batch_released).
VERDICT_ACTIONS = ("blocked", "promoted", "approved", "rejected", "rolled_back")


def actor() -> str:
    """Who did it: the OS user running the process."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return os.environ.get("USER", "unknown")


@dataclass(frozen=True)
class LedgerEntry:
    entry_id: int
    recorded_at: datetime
    action: str
    version: str | None
    champion_before: str | None
    champion_after: str | None
    data_hash: str | None
    metrics: dict[str, Any]
    verdict: str | None
    reason: str | None
    actor: str | None
    run_id: str | None

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["recorded_at"] = self.recorded_at.isoformat()
        return d


_LEDGER_COLUMNS = (
    "entry_id, recorded_at, action, version, champion_before, champion_after, data_hash, metrics, "
    "verdict, reason, actor, run_id"
)


def _entry(row: tuple) -> LedgerEntry:
    values = list(row)
    values[7] = json.loads(values[7]) if values[7] else {}
    return LedgerEntry(*values)


def ledger(con: duckdb.DuckDBPyConnection, limit: int | None = None) -> list[LedgerEntry]:
    """Ledger rows, newest first."""
    sql = f"SELECT {_LEDGER_COLUMNS} FROM ledger ORDER BY entry_id DESC"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return [_entry(r) for r in con.execute(sql).fetchall()]


def champion(con: duckdb.DuckDBPyConnection, at: datetime | None = None) -> str | None:
    """The champion now, or at a past time (naive UTC)."""
    if at is None:
        return fetch_value(con, "SELECT champion_after FROM ledger ORDER BY entry_id DESC LIMIT 1")  # type: ignore[return-value]
    return fetch_value(  # type: ignore[return-value]
        con, "SELECT champion_after FROM ledger WHERE recorded_at <= ? ORDER BY entry_id DESC LIMIT 1", [at]
    )


def record(
    con: duckdb.DuckDBPyConnection,
    *,
    action: str,
    version: str | None,
    champion_after: str | None,
    now: datetime,
    data_hash: str | None = None,
    metrics: dict | None = None,
    verdict: str | None = None,
    reason: str | None = None,
    run_id: str | None = None,
    who: str | None = None,
) -> LedgerEntry:
    """Append one ledger row (caller holds the writer lock, ideally in a transaction)."""
    before = champion(con)
    entry = LedgerEntry(
        next_id(con, "ledger", "entry_id"),
        now,
        action,
        version,
        before,
        champion_after,
        data_hash,
        metrics or {},
        verdict,
        reason,
        who or actor(),
        run_id,
    )
    con.execute(
        f"INSERT INTO ledger ({_LEDGER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            entry.entry_id,
            now,
            action,
            version,
            before,
            champion_after,
            data_hash,
            json.dumps(entry.metrics, default=_json_default),
            verdict,
            reason,
            entry.actor,
            run_id,
        ],
    )
    return entry


def _json_default(x: Any) -> Any:
    if isinstance(x, datetime):
        return x.isoformat()
    if hasattr(x, "item"):
        return x.item()
    return str(x)


def champion_stack(entries_oldest_first: list[LedgerEntry]) -> list[str]:
    """Champions in promotion order, with rolled-back ones taken off: the last is the champion, the
    one before it is where a plain rollback goes."""
    stack: list[str] = []
    for e in entries_oldest_first:
        if e.action in ("promoted", "approved") and e.version:
            stack.append(e.version)
        elif e.action == "rolled_back" and e.version:
            if e.version in stack:
                while stack and stack[-1] != e.version:
                    stack.pop()
            else:
                stack.append(e.version)
    return stack


def rollback_target(con: duckdb.DuckDBPyConnection) -> str | None:
    stack = champion_stack(list(reversed(ledger(con))))
    return stack[-2] if len(stack) >= 2 else None


def review_queue(con: duckdb.DuckDBPyConnection) -> list[LedgerEntry]:
    """Blocked challengers still waiting for a person: their latest ledger row is 'blocked'."""
    latest: dict[str, LedgerEntry] = {}
    for e in reversed(ledger(con)):
        if e.version:
            latest[e.version] = e
    return [e for e in latest.values() if e.action == "blocked"]


def latest_decision(con: duckdb.DuckDBPyConnection, version: str) -> LedgerEntry | None:
    row = fetch_one(
        con,
        f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE version = ? ORDER BY entry_id DESC LIMIT 1",
        [version],
    )
    return _entry(row) if row else None


def last_verdict(con: duckdb.DuckDBPyConnection) -> LedgerEntry | None:
    """The newest gate decision (blocked / promoted / approved / rejected / rolled_back)."""
    row = fetch_one(
        con,
        f"SELECT {_LEDGER_COLUMNS} FROM ledger WHERE action IN {VERDICT_ACTIONS!r} "
        "ORDER BY entry_id DESC LIMIT 1",
    )
    return _entry(row) if row else None


# ----------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelRecord:
    version: str
    created_at: datetime
    dataset_hash: str
    code_version: str
    params: dict[str, Any]
    n_train: int
    n_holdout: int
    train_seconds: float
    watermark_batch_id: int
    watermark_event_time: datetime | None
    model_sha256: str
    run_id: str | None


_MODEL_COLUMNS = (
    "version, created_at, dataset_hash, code_version, params, n_train, n_holdout, train_seconds, "
    "watermark_batch_id, watermark_event_time, model_sha256, run_id"
)


def _model(row: tuple) -> ModelRecord:
    values = list(row)
    values[4] = json.loads(values[4]) if values[4] else {}
    return ModelRecord(*values)


def record_model(con: duckdb.DuckDBPyConnection, m: ModelRecord) -> None:
    con.execute(
        f"INSERT INTO models ({_MODEL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            m.version,
            m.created_at,
            m.dataset_hash,
            m.code_version,
            json.dumps(m.params),
            m.n_train,
            m.n_holdout,
            m.train_seconds,
            m.watermark_batch_id,
            m.watermark_event_time,
            m.model_sha256,
            m.run_id,
        ],
    )


def model(con: duckdb.DuckDBPyConnection, version: str) -> ModelRecord | None:
    row = fetch_one(con, f"SELECT {_MODEL_COLUMNS} FROM models WHERE version = ?", [version])
    return _model(row) if row else None


def model_versions(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT version FROM models ORDER BY version").fetchall()]


def models(con: duckdb.DuckDBPyConnection) -> list[ModelRecord]:
    return [
        _model(r) for r in con.execute(f"SELECT {_MODEL_COLUMNS} FROM models ORDER BY version").fetchall()
    ]


# ------------------------------------------------------------------------------------ validations


def record_validation(
    con: duckdb.DuckDBPyConnection,
    *,
    challenger: str,
    champion: str | None,
    now: datetime,
    passed: bool,
    failed_checks: list[str],
    summary: dict,
    golden_hash: str,
    dataset_hash: str,
    report_path: str,
    run_id: str,
) -> None:
    con.execute(
        "INSERT INTO validations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            challenger,
            champion,
            now,
            passed,
            json.dumps(failed_checks),
            json.dumps(summary, default=_json_default),
            golden_hash,
            dataset_hash,
            report_path,
            run_id,
        ],
    )


def latest_validation(con: duckdb.DuckDBPyConnection, challenger: str) -> dict[str, Any] | None:
    row = fetch_one(
        con,
        "SELECT challenger_version, champion_version, created_at, passed, failed_checks, summary, golden_hash, "
        "dataset_hash, report_path, run_id FROM validations WHERE challenger_version = ? "
        "ORDER BY created_at DESC LIMIT 1",
        [challenger],
    )
    if row is None:
        return None
    keys = (
        "challenger_version",
        "champion_version",
        "created_at",
        "passed",
        "failed_checks",
        "summary",
        "golden_hash",
        "dataset_hash",
        "report_path",
        "run_id",
    )
    out = dict(zip(keys, row, strict=True))
    out["failed_checks"] = json.loads(out["failed_checks"] or "[]")
    out["summary"] = json.loads(out["summary"] or "{}")
    return out
