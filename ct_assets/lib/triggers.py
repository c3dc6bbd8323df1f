"""When to retrain, and how fresh things are: cheap reads of the ingest log, never scans of raw rows.

The ingest log holds one row per landed file with its labelled-row count and event-time range, so
"labelled rows newer than the champion's training watermark" is a sum over a few hundred log rows,
whatever the size of `raw_deltas`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import duckdb

from ct_assets.config import Settings
from ct_assets.lib import registry
from ct_assets.lib.warehouse import fetch_one


@dataclass(frozen=True)
class RetrainDecision:
    should_run: bool
    reason: str
    champion: str | None
    watermark_batch_id: int  # newest batch the champion was trained on (0: none)
    newest_batch_id: int
    rows_since_training: int
    threshold: int

    def to_json(self) -> dict:
        return asdict(self)


def champion_watermark(con: duckdb.DuckDBPyConnection) -> tuple[str | None, int, datetime | None]:
    """(champion version, newest batch id and newest event time it was trained on)."""
    champ = registry.champion(con)
    if champ is None:
        return None, 0, None
    row = fetch_one(
        con, "SELECT watermark_batch_id, watermark_event_time FROM models WHERE version = ?", [champ]
    )
    if row is None:
        return champ, 0, None
    return champ, int(row[0] or 0), row[1]


def retrain_decision(con: duckdb.DuckDBPyConnection, settings: Settings) -> RetrainDecision:
    """Retrain when labelled rows newer than the champion's watermark reach [retrain] min_new_rows."""
    champ, watermark, _ = champion_watermark(con)
    row = fetch_one(
        con,
        "SELECT coalesce(sum(rows_labelled) FILTER (WHERE batch_id > ?), 0), coalesce(max(batch_id), 0) "
        "FROM ingest_log WHERE status = 'ingested'",
        [watermark],
    )
    rows_since, newest = (int(row[0]), int(row[1])) if row else (0, 0)
    threshold = settings.min_new_rows
    who = f"champion {champ}'s training" if champ else "the start (no champion yet)"
    if newest == 0:
        reason, run = "no data ingested yet", False
    elif rows_since >= threshold:
        reason, run = f"{rows_since} labelled rows since {who}, threshold {threshold}", True
    else:
        reason, run = f"{rows_since} labelled rows since {who}, below the threshold {threshold}", False
    return RetrainDecision(run, reason, champ, watermark, newest, rows_since, threshold)


@dataclass(frozen=True)
class Freshness:
    newest_event_time: datetime | None  # newest ingested event time
    champion_event_time: datetime | None  # newest event time the champion trained on
    data_lag_hours: float | None  # the difference, in hours
    newest_file_landed_at: datetime | None  # mtime of the newest file that landed (handled or pending)
    file_age_hours: float | None


def freshness(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    now: datetime,
    pending_mtimes: list[datetime] | None = None,
) -> Freshness:
    row = fetch_one(
        con, "SELECT max(max_event_time) FILTER (WHERE status = 'ingested'), max(landed_at) FROM ingest_log"
    )
    newest_event, newest_landed = (row[0], row[1]) if row else (None, None)
    for m in pending_mtimes or []:
        newest_landed = m if newest_landed is None or m > newest_landed else newest_landed
    _, _, champ_time = champion_watermark(con)
    lag = None
    if newest_event is not None and champ_time is not None:
        lag = max(0.0, (newest_event - champ_time).total_seconds() / 3600)
    age = (now - newest_landed).total_seconds() / 3600 if newest_landed is not None else None
    return Freshness(newest_event, champ_time, lag, newest_landed, age)
