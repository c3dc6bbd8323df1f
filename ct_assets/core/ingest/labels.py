"""Late labels: label events written by an ingest, never a rewrite of a stored row.

Labels reach the warehouse in three ways, each a row of the append-only `label_events` table tagged with
the ingesting batch (store.labels explains why that batch id is also the label watermark):

- a label file (row id, label, optionally [columns] label_time): each of its labels is `attached` to a
  row that has none yet, a `duplicate` of the label the row already has, a `conflict` with it (the first
  label stays: relabelling is also a way to poison data; counted and alerted), or `pending` when no row
  has that id yet (kept, and attached when the row lands);
- rows sent again (ids already stored) now carrying a label: the label is attached when the stored row
  has none, recorded as a conflict when it has a different one, and nothing when it is the same; the
  rows themselves are not appended again (counted as `rows_duplicate`, as before);
- a row landing whose id has a pending label: the pending label is attached (or, if the row brought its
  own label, recorded as a duplicate or a conflict: the row's own label is kept).

Each attached label's delay is recorded: its label time (or, without one, when it arrived) minus the
row's event time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from ct_assets.config.settings import Settings
from ct_assets.store.labels import attached_sql
from ct_assets.store.sql import next_id, quote

OPEN_PENDING = (
    "SELECT p.* FROM label_events p ANTI JOIN (SELECT source_event_id FROM label_events WHERE "
    "source_event_id IS NOT NULL) r ON r.source_event_id = p.event_id WHERE p.status = 'pending'"
)
COLUMNS = (
    "event_id, recorded_at, batch_id, label_batch_id, row_key, row_batch_id, label, label_time, arrived_at, "
    "delay_seconds, status, source_event_id"
)


def _seconds(later: str, earlier: str) -> str:
    return f"(epoch_us({later}) - epoch_us({earlier})) / 1e6"


@dataclass
class LabelCounts:
    """The label events one ingested file wrote, by status, and the median delay of those attached."""

    attached: int = 0
    pending: int = 0
    conflict: int = 0
    duplicate: int = 0
    delay_hours: float | None = None

    @property
    def total(self) -> int:
        return self.attached + self.pending + self.conflict + self.duplicate


def counts(con: duckdb.DuckDBPyConnection, batch_id: int) -> LabelCounts:
    rows = con.execute(
        "SELECT status, count(*), median(delay_seconds) FROM label_events WHERE batch_id = ? GROUP BY status",
        [batch_id],
    ).fetchall()
    out = LabelCounts()
    for status, n, delay in rows:
        setattr(out, status, int(n))
        if status == "attached" and delay is not None:
            out.delay_hours = round(float(delay) / 3600, 3)
    return out


def _first_id(con: duckdb.DuckDBPyConnection, source: str) -> int:
    """The first of as many new event ids as the temp table `source` has rows (at most one event each)."""
    return next_id(
        con, "label_events", "event_id", con.execute(f"SELECT count(*) FROM {source}").fetchall()[0][0]
    )


def from_label_file(con: duckdb.DuckDBPyConnection, settings: Settings, batch_id: int, now: datetime) -> None:
    """Events for the labels of the temp table `label_file` (row_key, label, label_time)."""
    rid, label, et = (
        quote(c) for c in (settings.columns.row_id or "", settings.columns.label, settings.columns.event_time)
    )
    con.execute(
        f"""INSERT INTO label_events ({COLUMNS})
        SELECT $first - 1 + row_number() OVER (ORDER BY x.row_key), $now, $b, $b, x.row_key, x.row_batch,
               x.label, x.label_time, $now,
               CASE WHEN x.status = 'attached' THEN {_seconds("coalesce(x.label_time, $now)", "x.row_time")} END,
               x.status, NULL
        FROM (SELECT f.*, r._batch_id AS row_batch, r.{et} AS row_time,
                CASE WHEN r.{rid} IS NOT NULL THEN
                       CASE WHEN coalesce(r.{label}, a._late_label) IS NULL THEN 'attached'
                            WHEN coalesce(r.{label}, a._late_label) = f.label THEN 'duplicate'
                            ELSE 'conflict' END
                     WHEN p.row_key IS NOT NULL THEN CASE WHEN p.label = f.label THEN 'duplicate' ELSE 'conflict' END
                     ELSE 'pending' END AS status
              FROM label_file f
              LEFT JOIN (SELECT d.{rid}, d.{label}, d.{et}, d._batch_id FROM raw_deltas d
                         SEMI JOIN label_file l ON d.{rid} = l.row_key) r ON r.{rid} = f.row_key
              LEFT JOIN ({attached_sql()}) a ON a._lk = f.row_key
              LEFT JOIN ({OPEN_PENDING}) p ON p.row_key = f.row_key) x""",
        {"first": _first_id(con, "label_file"), "now": now, "b": batch_id},
    )


def from_resent_rows(con: duckdb.DuckDBPyConnection, batch_id: int, now: datetime) -> None:
    """Events for rows sent again with a label (the temp table `ingest_dups`: row_key, new_label,
    old_label, old_batch, old_time): attached when the stored row has no label yet, conflict when its
    label differs, nothing when it is the same."""
    con.execute(
        f"""INSERT INTO label_events ({COLUMNS})
        SELECT $first - 1 + row_number() OVER (ORDER BY x.row_key), $now, $b, $b, x.row_key, x.old_batch,
               x.new_label, NULL, $now,
               CASE WHEN x.known IS NULL THEN {_seconds("$now", "x.old_time")} END,
               CASE WHEN x.known IS NULL THEN 'attached' ELSE 'conflict' END, NULL
        FROM (SELECT i.*, coalesce(i.old_label, a._late_label) AS known FROM ingest_dups i
              LEFT JOIN ({attached_sql()}) a ON a._lk = i.row_key WHERE i.new_label IS NOT NULL) x
        WHERE x.known IS NULL OR x.known <> x.new_label""",
        {"first": _first_id(con, "ingest_dups"), "now": now, "b": batch_id},
    )


def resolve_pending(con: duckdb.DuckDBPyConnection, settings: Settings, batch_id: int, now: datetime) -> None:
    """Pending labels whose row landed in `batch_id`: attached (or a duplicate or conflict of the label
    the row brought), each pointing at the pending event it resolves."""
    pending = con.execute("SELECT count(*) FROM label_events WHERE status = 'pending'").fetchall()[0][0]
    if not pending:
        return
    rid, label, et = (
        quote(c) for c in (settings.columns.row_id or "", settings.columns.label, settings.columns.event_time)
    )
    con.execute(
        f"""INSERT INTO label_events ({COLUMNS})
        SELECT $first - 1 + row_number() OVER (ORDER BY p.event_id), $now, $b, p.label_batch_id, p.row_key, $b,
               p.label, p.label_time, p.arrived_at,
               CASE WHEN n.{label} IS NULL THEN {_seconds("coalesce(p.label_time, p.arrived_at)", f"n.{et}")} END,
               CASE WHEN n.{label} IS NULL THEN 'attached' WHEN n.{label} = p.label THEN 'duplicate'
                    ELSE 'conflict' END,
               p.event_id
        FROM ({OPEN_PENDING}) p JOIN raw_deltas n ON n.{rid} = p.row_key AND n._batch_id = $b""",
        {"first": next_id(con, "label_events", "event_id", pending), "now": now, "b": batch_id},
    )
