"""Ingest landed files into `raw_deltas`: read, validate, append whole or quarantine whole, and log.

Policy, file by file (docs/ingest_policy.md has the full table):
- a file whose bytes were already ingested (under any name) is logged as `duplicate` and archived;
- a file that cannot be read whole, has no rows, or fails the Great Expectations suite is quarantined
  whole, with a one-line reason naming the file, the column (when there is one) and the rule; so is
  a symlink with a ready name (links are never followed);
- otherwise its rows are appended in one transaction, as one batch; rows whose id is already in the
  warehouse (from an earlier file) are dropped and counted, not appended twice;
- every file gets one ingest_log row, and is then moved out of the landing folder (archive or
  quarantine), so nothing is lost and nothing is read twice.

Files are read `[ingest] chunk_rows` rows at a time, so memory stays bounded by a chunk whatever the
file's size. A file of one chunk is read once; a longer one is read twice: first to validate every
chunk (outside the writer lock), then, only if all passed, to append every chunk inside one
transaction, which also checks that row ids are unique across chunks before it commits.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl

from ct_assets.common import failpoints
from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core.ingest import landing
from ct_assets.core.ingest.quality import Outcome, first_failure, merge_outcomes, validate_delta
from ct_assets.core.ingest.reader import StoreError, UnreadableDelta, read_chunks, to_stored
from ct_assets.core.triggers.snapshot import writer_keeping_snapshot
from ct_assets.store.hashing import AGGREGATE_SQL, data_hash, file_sha256, row_hash_sql
from ct_assets.store.schema import content_columns, raw_delta_columns, reserve_sql
from ct_assets.store.sql import fetch_one, next_id, quote
from ct_assets.store.warehouse import connect_writer, file_lock, transaction


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


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)

    def with_status(self, status: str) -> list[FileResult]:
        return [f for f in self.files if f.status == status]

    @property
    def rows_appended(self) -> int:
        return sum(f.rows for f in self.with_status("ingested"))


def ingest_landed_files(
    settings: Settings,
    *,
    run_id: str = "",
    now: datetime | None = None,
    files: list[landing.LandedFile] | None = None,
) -> IngestReport:
    """Ingest every ready file in the landing folder (or the given ones), one transaction each."""
    now = now or utc_now()
    report = IngestReport()
    # One ingest at a time (a sensor-launched run and a `cycle` may overlap): the second waits, then
    # lists the landing folder afresh, so no file is read by two runs.
    lock = settings.paths.warehouse.with_name(settings.paths.warehouse.name + ".ingest.lock")
    with file_lock(lock, settings.lock_timeout_seconds, "the ingest lock"):
        pending = files if files is not None else landing.ready_entries(settings.paths.landing)
        ingested = _ingested_hashes(settings) if pending else set()
        for lf in pending:
            if os.path.lexists(lf.path):
                result = _ingest_one(settings, lf, run_id, now, ingested)
                report.files.append(result)
                if result.status == "ingested":
                    ingested.add(result.file_hash)
    return report


def _ingested_hashes(settings: Settings) -> set[str]:
    """Content hashes of every file ingested so far: a file with one of them is a duplicate, and is
    not read or validated (the transaction that logs it checks again)."""
    with connect_writer(settings) as con:
        rows = con.execute("SELECT DISTINCT file_hash FROM ingest_log WHERE status = 'ingested'").fetchall()
    return {r[0] for r in rows}


def _symlink_hash(path: Path) -> str:
    """A symlink is identified by where it points; it is never opened."""
    return hashlib.sha256(b"symlink:" + os.fsencode(os.readlink(path))).hexdigest()


def _quarantine(result: FileResult, what: str) -> None:
    result.status, result.reason = "quarantined", f"{result.name}: {what}"


def _ingest_one(
    settings: Settings, lf: landing.LandedFile, run_id: str, now: datetime, ingested: set[str]
) -> FileResult:
    result = FileResult(name=landing.display_name(lf.name), status="ingested")
    stored: pl.DataFrame | None = None
    before: os.stat_result | None = None
    unread = False  # a known duplicate, not validated
    if lf.path.is_symlink():
        result.file_hash = _symlink_hash(lf.path)
        _quarantine(result, "is a symlink; links are never followed (land the file itself)")
    else:
        try:
            before = lf.path.stat()
            result.file_hash = file_sha256(lf.path)
        except OSError as e:
            _quarantine(result, f"cannot be opened: {e.strerror}")
        else:
            unread = result.file_hash in ingested
            if not unread:
                stored = _validate(settings, lf.path, result, now)

    tag = result.file_hash[:12] or "unread"
    with writer_keeping_snapshot(settings) as con, transaction(con):
        known = fetch_one(
            con,
            "SELECT batch_id FROM ingest_log WHERE file_hash = ? AND status = 'ingested' LIMIT 1",
            [result.file_hash],
        )
        if known is not None:
            result.status = "duplicate"
            result.reason = f"{result.name}: same content as batch {known[0]}, already ingested"
            result.batch_id = int(known[0])
        elif unread:
            raise RuntimeError(
                f"{result.name}: its content was ingested, yet the ingest log no longer says so"
            )
        elif result.status == "ingested":
            batch_id = next_id(con, "ingest_log", "batch_id")
            chunks: Iterable[pl.DataFrame] = (
                [stored]
                if stored is not None
                else (to_stored(f, settings) for f in read_chunks(lf.path, settings))
            )
            try:
                _append(con, settings, batch_id, chunks, result)
                if before is not None and result.chunks > 1 and not _same_file(before, _stat(lf.path)):
                    raise UnreadableDelta(
                        "changed while it was being ingested (a ready file must not change)"
                    )
            except (UnreadableDelta, StoreError) as e:  # only on the second read of a long file
                con.execute("DELETE FROM raw_deltas WHERE _batch_id = ?", [batch_id])
                _quarantine(result, f"{e} (on the second read)")
            if result.status != "ingested":
                result.rows = result.rows_labelled = result.rows_duplicate = 0
                result.batch_id, result.data_hash = None, ""
                result.min_event_time = result.max_event_time = None
        folder = settings.paths.quarantine if result.status == "quarantined" else settings.paths.archive
        target = landing.destination(folder, lf.name, tag)
        result.stored_as = landing.display_name(str(target))
        _log(con, result, lf, run_id, now)
        failpoints.hit("ingest.before_commit")
    failpoints.hit("ingest.after_commit")
    # After the commit: a crash before the move leaves the file in landing, and the next run finds
    # its hash already ingested (logged as a duplicate) or validates it again; nothing is lost.
    if result.status == "quarantined":
        landing.write_reason(target, result.reason, [o.__dict__ for o in result.outcomes if not o.success])
    landing.move(lf.path, target)
    return result


def _stat(path: Path) -> os.stat_result:
    """The file's stat, or UnreadableDelta when it vanished or cannot be read meanwhile."""
    try:
        return path.stat()
    except OSError as e:
        raise UnreadableDelta(f"could not be read again ({e.strerror or e})") from None


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ino) == (b.st_size, b.st_mtime_ns, b.st_ino)


def _validate(settings: Settings, path: Path, result: FileResult, now: datetime) -> pl.DataFrame | None:
    """Read and validate the file chunk by chunk; stop at the first failing chunk. Returns the stored
    frame when the file is one chunk that passed (so it is not read again), else None; a failure is
    recorded in `result` (status, reason, outcomes)."""
    stored: pl.DataFrame | None = None
    extra: list[str] = []
    wanted = set(settings.stored_columns)
    try:
        with contextlib.closing(read_chunks(path, settings)) as chunks:
            for frame in chunks:
                if result.chunks == 0:
                    extra = [c for c in frame.columns if c not in wanted]
                result.chunks += 1
                outcomes = validate_delta(frame, settings, now)
                result.outcomes = merge_outcomes(result.outcomes, outcomes)
                if first_failure(outcomes) is not None:
                    failure = first_failure(result.outcomes)
                    assert failure is not None
                    _quarantine(result, failure.describe())
                    return None
                checked = to_stored(frame, settings)  # every chunk must be storable before any is appended
                stored = checked if result.chunks == 1 else None
    except UnreadableDelta as e:
        _quarantine(result, str(e))
        return None
    except StoreError as e:
        result.outcomes.append(e.outcome())
        _quarantine(result, str(e))
        return None
    if result.chunks == 0:
        _quarantine(result, "has no data rows")
        return None
    if extra:
        names = ", ".join(f"'{landing.display_name(c)}'" for c in extra)
        result.reason = (
            f"{result.name}: column{'s' if len(extra) > 1 else ''} {names} not in the configuration, "
            "not stored (extra columns are ignored)"
        )
    return stored


def _append(
    con, settings: Settings, batch_id: int, chunks: Iterable[pl.DataFrame], result: FileResult
) -> None:
    """Append the delta's chunks as one new batch (inside the caller's transaction); then, when the
    file had several chunks, refuse it if a row id repeats across them, and drop (and count) rows
    whose id an earlier batch already holds."""
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
        con.execute(
            f"DELETE FROM raw_deltas WHERE _batch_id = ? AND {q} IN (SELECT r.{q} FROM raw_deltas r "
            f"WHERE r._batch_id <> ? AND r.{q} IN (SELECT {q} FROM raw_deltas WHERE _batch_id = ?))",
            [batch_id, batch_id, batch_id],
        )
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
    _quarantine(result, outcome.describe())
    return True


def _log(con, result: FileResult, lf: landing.LandedFile, run_id: str, now: datetime) -> None:
    entry = next_id(con, "ingest_log", "entry_id")
    con.execute(
        "INSERT INTO ingest_log (entry_id, logged_at, file_name, file_hash, file_bytes, status, reason, batch_id, "
        "rows, rows_labelled, rows_duplicate, min_event_time, max_event_time, data_hash, landed_at, stored_as, "
        "run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        ],
    )
