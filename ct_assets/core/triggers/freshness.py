"""Freshness: how far the champion's training data lags the newest rows it scores, how old the newest
file is, and which rows arrived after the champion's training."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl

from ct_assets.config.settings import Settings
from ct_assets.core.triggers.decision import champion_watermark
from ct_assets.store import labels
from ct_assets.store.evolution import user_columns
from ct_assets.store.schema import ROLE_CHAMPION
from ct_assets.store.sql import fetch_one, fetch_value, quote

FRESH_ROWS_LIMIT = 200_000  # decay and drift are judged on at most this many of the newest rows


def fresh_rows(
    con: duckdb.DuckDBPyConnection, settings: Settings, watermark: int, *, with_batch_ids: bool = False
) -> tuple[pl.DataFrame, int]:
    """The rows the champion has not seen: those ingested after its watermark, and older rows whose label
    arrived after it (late labels; store.labels), each with its effective label; at most FRESH_ROWS_LIMIT,
    the newest. Returns them and the newest batch among them. With `with_batch_ids`, each row's
    `_batch_id`, `_row_hash` and `_new_row` (it landed after the watermark: drift looks at those only)."""
    label, et = quote(settings.columns.label), quote(settings.columns.event_time)
    cols = [quote(n) for n, _ in user_columns(con)]
    select = ", ".join(f"{labels.label_sql(settings)} AS {c}" if c == label else f"d.{c}" for c in cols)
    parts = [
        f"SELECT {select}, d._batch_id, d._row_hash, true AS _new_row, d._batch_id AS _arrived "
        f"FROM raw_deltas d{labels.join_sql(settings, 'd')} WHERE d._batch_id > $wm"
    ]
    rid = settings.columns.row_id
    if rid and fetch_value(
        con, "SELECT count(*) FROM label_events WHERE status = 'attached' AND batch_id > ?", [watermark]
    ):
        parts.append(
            f"SELECT {select}, d._batch_id, d._row_hash, false, e._label_batch FROM ({labels.attached_sql()}) e "
            f"JOIN raw_deltas d ON d.{quote(rid)} = e._lk "
            f"WHERE e._label_batch > $wm AND d._batch_id <= $wm AND d.{label} IS NULL"
        )
    frame = con.sql(
        " UNION ALL ".join(parts) + f" ORDER BY _arrived DESC, {et} DESC LIMIT $limit",
        params={"wm": watermark, "limit": FRESH_ROWS_LIMIT},
    ).pl()
    newest = int(frame["_arrived"].max() or watermark) if frame.height else watermark
    frame = frame.drop("_arrived")
    return (frame if with_batch_ids else frame.drop("_batch_id", "_row_hash", "_new_row")), newest


@dataclass(frozen=True)
class Freshness:
    newest_event_time: datetime | None  # newest ingested event time
    champion_event_time: datetime | None  # newest event time the champion trained on
    data_lag_hours: float | None  # newest scored (else ingested) event time minus the champion's, in hours
    newest_file_landed_at: datetime | None  # mtime of the newest file that landed (handled or pending)
    file_age_hours: float | None
    newest_scored_event_time: datetime | None = None  # newest event time of a row a champion scored
    lag_measured_on: str = "ingested rows"  # "scored rows" once any row was scored


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
    et = quote(settings.columns.event_time)
    scored = fetch_value(con, f"SELECT max({et}) FROM predictions WHERE role = ?", [ROLE_CHAMPION])
    # The gap between the data the champion learned from and the data it is processing: the newest row
    # it (or a champion before it) scored; before anything was scored, the newest row ingested.
    basis = scored if scored is not None else newest_event
    lag = None
    if basis is not None and champ_time is not None:
        lag = max(0.0, (basis - champ_time).total_seconds() / 3600)
    age = (now - newest_landed).total_seconds() / 3600 if newest_landed is not None else None
    on = "scored rows" if scored is not None else "ingested rows"
    return Freshness(newest_event, champ_time, lag, newest_landed, age, scored, on)
