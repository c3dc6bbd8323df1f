"""Appending one validated landed file inside the ingest transaction: its rows as a new batch (rows
whose id is already stored dropped and counted, the labels they bring attached), or a label file's
labels as a batch of label events; and the file's ingest_log row."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from ct_assets.config import Settings
from ct_assets.core.ingest import labels, landing
from ct_assets.core.ingest.labels import LabelCounts
from ct_assets.core.ingest.quality import Outcome, label_file_columns
from ct_assets.store.hashing import AGGREGATE_SQL, data_hash, row_hash_sql
from ct_assets.store.schema import content_columns, raw_delta_columns, reserve_sql
from ct_assets.store.sql import fetch_one, next_id, quote


@dataclass
class FileResult:
    name: str  # the file name as one printable line (see landing.display_name)
    status: str  # ingested | quarantined | duplicate
    reason: str = ""
    rows: int = 0
    rows_labelled: int = 0
    rows_duplicate: int = 0
    batch_id: int | None = None
    stored_as: str = ""
    file_hash: str = ""
    data_hash: str = ""
    min_event_time: datetime | None = None
    max_event_time: datetime | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    chunks: int = 0  # chunks read and validated
    kind: str = "rows"  # rows | labels (a label file)
    labels: LabelCounts = field(default_factory=LabelCounts)
    stored_columns: list[tuple[str, str]] = field(default_factory=list)  # a label file's, as stored
    validated_at: datetime | None = None  # wall clock (UTC) when its validation ended
    committed_at: datetime | None = None  # wall clock (UTC) when its transaction committed


def quarantine(result: FileResult, what: str) -> None:
    result.status, result.reason = "quarantined", f"{result.name}: {what}"


def label_file_hint(columns: list[str], settings: Settings) -> str:
    """For a file that holds the row id and the label but fails as a file of rows: what a label file is."""
    cols = settings.columns
    if not cols.row_id or cols.event_time in columns or not {cols.row_id, cols.label} <= set(columns):
        return ""
    names = ", ".join(label_file_columns(settings))
    return f" (a label file holds exactly the columns {names}{'' if cols.label_time else ' ([columns] label_time may name a third)'})"


def append_labels(
    con, settings: Settings, batch_id: int, chunks: Iterable[pl.DataFrame], result: FileResult, now: datetime
) -> None:
    """A label file as one batch of label events (inside the caller's transaction); row ids repeated
    across its chunks quarantine it."""
    names = [n for n, _ in result.stored_columns]
    label_time = f"d.{quote(names[2])}" if len(names) > 2 else "CAST(NULL AS TIMESTAMP)"
    select = f"d.{quote(names[0])} AS row_key, d.{quote(names[1])} AS label, {label_time} AS label_time"
    total = 0
    try:
        for i, stored in enumerate(chunks):
            con.register("label_chunk", stored.to_arrow())
            try:
                verb = "CREATE OR REPLACE TEMP TABLE label_file AS" if i == 0 else "INSERT INTO label_file"
                con.execute(f"{verb} SELECT {select} FROM label_chunk d")
            finally:
                con.unregister("label_chunk")
            total += stored.height
        repeated = con.execute(
            "SELECT row_key, count(*) FROM label_file GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 3"
        ).fetchall()
        if repeated:
            quarantine(
                result,
                f"column '{names[0]}' fails expect_column_values_to_be_unique (observed e.g. "
                + ", ".join(repr(r[0]) for r in repeated)
                + ")",
            )
            return
        labels.from_label_file(con, settings, batch_id, now)
    finally:
        con.execute("DROP TABLE IF EXISTS label_file")
    result.batch_id = batch_id
    result.labels = labels.counts(con, batch_id)
    result.data_hash = data_hash(total, 0, 0)


def append_rows(
    con,
    settings: Settings,
    batch_id: int,
    chunks: Iterable[pl.DataFrame],
    result: FileResult,
    now: datetime,
) -> None:
    """Append the delta's chunks as one new batch (inside the caller's transaction); then, when the
    file had several chunks, refuse it if a row id repeats across them, and drop (and count) rows
    whose id an earlier batch already holds, attaching the labels they bring (core.ingest.labels)."""
    cols = [n for n, _ in raw_delta_columns(settings)]
    col_list = ", ".join(quote(c) for c in cols)
    col_sql = ", ".join(f"d.{quote(c)}" for c in cols)
    total = 0
    for stored in chunks:
        con.register("delta_frame", stored.to_arrow())
        try:
            con.execute(
                f"INSERT INTO raw_deltas ({col_list}, _batch_id, _row_hash, _reserve, _content_hash) "
                f"SELECT {col_sql}, CAST(? AS BIGINT), {row_hash_sql(cols, 'd')}, {reserve_sql(settings, 'd')}, "
                f"{row_hash_sql(content_columns(settings), 'd')} FROM delta_frame d",
                [batch_id],
            )
        finally:
            con.unregister("delta_frame")
        total += stored.height
    rid = settings.columns.row_id
    if rid:
        q = quote(rid)
        if result.chunks > 1 and _repeated_ids(con, settings, batch_id, total, result):
            con.execute("DELETE FROM raw_deltas WHERE _batch_id = ?", [batch_id])
            return
        et, label = quote(settings.columns.event_time), quote(settings.columns.label)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE ingest_dups AS
            SELECT n.{q} AS row_key, n.{label} AS new_label, o.{label} AS old_label, o._batch_id AS old_batch,
                   o.{et} AS old_time
            FROM raw_deltas n JOIN raw_deltas o ON o.{q} = n.{q} AND o._batch_id <> $b WHERE n._batch_id = $b""",
            {"b": batch_id},
        )
        try:
            labels.from_resent_rows(con, batch_id, now)
            con.execute(
                f"DELETE FROM raw_deltas WHERE _batch_id = ? AND {q} IN (SELECT row_key FROM ingest_dups)",
                [batch_id],
            )
        finally:
            con.execute("DROP TABLE IF EXISTS ingest_dups")
        labels.resolve_pending(con, settings, batch_id, now)
        result.labels = labels.counts(con, batch_id)
    et, label = quote(settings.columns.event_time), quote(settings.columns.label)
    row = fetch_one(
        con,
        f"SELECT {AGGREGATE_SQL}, count({label}), min({et}), max({et}) FROM raw_deltas WHERE _batch_id = ?",
        [batch_id],
    )
    assert row is not None
    count, hash_sum, hash_xor, labelled, tmin, tmax = row
    result.batch_id = batch_id
    result.rows = int(count)
    result.rows_labelled = int(labelled)
    result.rows_duplicate = total - int(count)
    result.min_event_time, result.max_event_time = tmin, tmax
    result.data_hash = data_hash(count, hash_sum, hash_xor)


def _repeated_ids(con, settings: Settings, batch_id: int, total: int, result: FileResult) -> bool:
    """Row ids repeated across the chunks of one file (the suite sees one chunk at a time): record
    the failure in `result` and return True when there are any."""
    rid = settings.columns.row_id
    assert rid
    q = quote(rid)
    rows = con.execute(
        f"SELECT {q}, count(*) AS n FROM raw_deltas WHERE _batch_id = ? GROUP BY {q} HAVING count(*) > 1 "
        f"ORDER BY {q}",
        [batch_id],
    ).fetchall()
    if not rows:
        return False
    outcome = Outcome(
        check="raw_deltas_row_ids_unique",
        expectation="expect_column_values_to_be_unique",
        column=rid,
        success=False,
        observed="e.g. " + ", ".join(repr(r[0]) for r in rows[:3]),
        unexpected_count=sum(int(r[1]) for r in rows),
        element_count=total,
    )
    result.outcomes = [
        outcome if (o.check, o.expectation, o.column) == (outcome.check, outcome.expectation, rid) else o
        for o in result.outcomes
    ]
    quarantine(result, outcome.describe())
    return True


def log_file(
    con, settings: Settings, result: FileResult, lf: landing.LandedFile, run_id: str, now: datetime
) -> None:
    entry = next_id(con, "ingest_log", "entry_id")
    con.execute(
        "INSERT INTO ingest_log (entry_id, logged_at, file_name, file_hash, file_bytes, status, reason, batch_id, "
        "rows, rows_labelled, rows_duplicate, min_event_time, max_event_time, data_hash, landed_at, stored_as, "
        "run_id, kind, labels_attached, labels_pending, labels_conflict, labels_duplicate, row_columns, "
        "content_columns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            entry,
            now,
            result.name,
            result.file_hash,
            lf.size,
            result.status,
            result.reason or None,
            result.batch_id if result.status == "ingested" else None,
            result.rows,
            result.rows_labelled,
            result.rows_duplicate,
            result.min_event_time,
            result.max_event_time,
            result.data_hash or None,
            lf.landed_at,
            result.stored_as,
            run_id or None,
            result.kind,
            result.labels.attached,
            result.labels.pending,
            result.labels.conflict,
            result.labels.duplicate,
            *_hashed_columns(settings, result),
        ],
    )


def _hashed_columns(settings: Settings, result: FileResult) -> list[str | None]:
    """The columns a row batch's row hashes and content hashes cover (store.evolution)."""
    if result.status != "ingested" or result.kind != "rows":
        return [None, None]
    return [json.dumps([n for n, _ in raw_delta_columns(settings)]), json.dumps(content_columns(settings))]
