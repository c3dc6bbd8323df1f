"""Ingest landed files into `raw_deltas`: read, validate, append whole or quarantine whole, and log.

Policy, file by file (docs/ingest_policy.md has the full table):
- a file whose bytes were already ingested (under any name) is logged as `duplicate` and archived;
- a file that cannot be read whole, has no rows, or fails the Great Expectations suite is quarantined
  whole, with a one-line reason naming the file, the column (when there is one) and the rule; so is
  a symlink with a ready name (links are never followed);
- otherwise its rows are appended in one transaction, as one batch; rows whose id is already in the
  warehouse (from an earlier file) are dropped and counted, not appended twice, but a label they bring
  for a stored row that has none is attached (core.ingest.labels);
- a label file (exactly the row id and the label, and optionally [columns] label_time) is a batch of
  label events, not of rows;
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import polars as pl

from ct_assets.common import failpoints
from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core import alerts
from ct_assets.core.ingest import labels, landing
from ct_assets.core.ingest.append import (
    FileResult,
    append_labels,
    append_rows,
    label_file_hint,
    log_file,
    quarantine,
)
from ct_assets.core.ingest.quality import first_failure, is_label_file, merge_outcomes, validate_delta
from ct_assets.core.ingest.reader import StoreError, UnreadableDelta, label_columns, read_chunks, to_stored
from ct_assets.core.triggers.snapshot import writer_keeping_snapshot
from ct_assets.store.hashing import file_sha256
from ct_assets.store.sql import fetch_one, next_id
from ct_assets.store.warehouse import connect_writer, file_lock, transaction

__all__ = ["FileResult", "IngestReport", "Outlet", "ingest_landed_files"]


@dataclass
class Outlet:
    """Where a handled file goes and what guards its commit: local folders and nothing (embedded), or
    object storage and the file's claim (cluster mode, core.ingest.objects)."""

    # (status, file name, tag) -> where the file will be, as logged in ingest_log.stored_as
    target: Callable[[str, str, str], str]
    # (landed file, result, target) -> move it there (with the quarantine's reason beside it)
    finish: Callable[[landing.LandedFile, FileResult, str], None]
    # (result) -> a context around the warehouse transaction; what it yields may get `release` set
    fence: Callable[[FileResult], contextlib.AbstractContextManager[dict[str, bool] | None]] = (
        lambda _result: contextlib.nullcontext()
    )


def local_outlet(settings: Settings) -> Outlet:
    def target(status: str, name: str, tag: str) -> str:
        folder = settings.paths.quarantine if status == "quarantined" else settings.paths.archive
        return str(landing.destination(folder, name, tag))

    def finish(lf: landing.LandedFile, result: FileResult, target: str) -> None:
        if result.status == "quarantined":
            landing.write_reason(
                Path(target), result.reason, [o.__dict__ for o in result.outcomes if not o.success]
            )
        landing.move(lf.path, Path(target))

    return Outlet(target, finish)


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)

    def with_status(self, status: str) -> list[FileResult]:
        return [f for f in self.files if f.status == status]

    @property
    def rows_appended(self) -> int:
        return sum(f.rows for f in self.with_status("ingested"))

    @property
    def labels_attached(self) -> int:
        return sum(f.labels.attached for f in self.with_status("ingested"))


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
                result = ingest_one(settings, lf, run_id, now, ingested, local_outlet(settings))
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


def ingest_one(
    settings: Settings, lf: landing.LandedFile, run_id: str, now: datetime, ingested: set[str], outlet: Outlet
) -> FileResult:
    result = FileResult(name=landing.display_name(lf.name), status="ingested")
    stored: pl.DataFrame | None = None
    before: os.stat_result | None = None
    unread = False  # a known duplicate, not validated
    if lf.path.is_symlink():
        result.file_hash = _symlink_hash(lf.path)
        quarantine(result, "is a symlink; links are never followed (land the file itself)")
    else:
        try:
            before = lf.path.stat()
            result.file_hash = file_sha256(lf.path)
        except OSError as e:
            quarantine(result, f"cannot be opened: {e.strerror}")
        else:
            unread = result.file_hash in ingested
            if not unread:
                stored = _validate(settings, lf.path, result, now)
                result.validated_at = utc_now()

    tag = result.file_hash[:12] or "unread"
    with writer_keeping_snapshot(settings) as con, outlet.fence(result) as fenced, transaction(con):
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
            columns = result.stored_columns or None
            chunks: Iterable[pl.DataFrame] = (
                [stored]
                if stored is not None
                else (to_stored(f, settings, columns) for f in read_chunks(lf.path, settings))
            )
            try:
                if result.kind == "labels":
                    append_labels(con, settings, batch_id, chunks, result, now)
                else:
                    append_rows(con, settings, batch_id, chunks, result, now)
                if before is not None and result.chunks > 1 and not _same_file(before, _stat(lf.path)):
                    raise UnreadableDelta(
                        "changed while it was being ingested (a ready file must not change)"
                    )
            except (UnreadableDelta, StoreError) as e:  # only on the second read of a long file
                con.execute("DELETE FROM raw_deltas WHERE _batch_id = ?", [batch_id])
                quarantine(result, f"{e} (on the second read)")
            if result.status != "ingested":
                con.execute("DELETE FROM label_events WHERE batch_id = ?", [batch_id])
                result.rows = result.rows_labelled = result.rows_duplicate = 0
                result.batch_id, result.data_hash = None, ""
                result.min_event_time = result.max_event_time = None
                result.labels = labels.LabelCounts()
        target = outlet.target(result.status, lf.name, tag)
        result.stored_as = landing.display_name(target)
        log_file(con, settings, result, lf, run_id, now)
        if fenced is not None and result.status == "quarantined":
            fenced["release"] = True
        failpoints.hit("ingest.before_commit")
    result.committed_at = utc_now()
    failpoints.hit("ingest.after_commit")
    # After the commit: a crash before the move leaves the file in landing, and the next run finds
    # its hash already ingested (logged as a duplicate) or validates it again; nothing is lost.
    outlet.finish(lf, result, target)
    if result.labels.conflict:
        _conflict_alert(settings, result, now)
    return result


def _conflict_alert(settings: Settings, result: FileResult, now: datetime) -> None:
    """Relabelling is also a way to poison data: conflicting labels are kept out (the first label stays)
    and said aloud, one `data` alert per file that brought any."""
    n = result.labels.conflict
    alerts.raise_alert(
        settings,
        kind="data",
        cause=f"label_conflict:{result.batch_id}",
        now=now,
        message=f"{result.name} (batch {result.batch_id}): {n} label{'s differ' if n > 1 else ' differs'} from the label "
        "already known for the row; the first label stays (see label_events, status 'conflict')",
        details={"batch_id": result.batch_id, "file": result.name, "conflicts": n},
    )


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
                    if is_label_file(frame.columns, settings):
                        result.kind, extra = "labels", []
                        result.stored_columns = label_columns(settings, frame.columns)
                result.chunks += 1
                outcomes = validate_delta(frame, settings, now, labels=result.kind == "labels")
                result.outcomes = merge_outcomes(result.outcomes, outcomes)
                if first_failure(outcomes) is not None:
                    failure = first_failure(result.outcomes)
                    assert failure is not None
                    quarantine(result, failure.describe() + label_file_hint(frame.columns, settings))
                    return None
                # every chunk must be storable before any is appended
                checked = to_stored(frame, settings, result.stored_columns or None)
                stored = checked if result.chunks == 1 else None
    except UnreadableDelta as e:
        quarantine(result, str(e))
        return None
    except StoreError as e:
        result.outcomes.append(e.outcome())
        quarantine(result, str(e))
        return None
    if result.chunks == 0:
        quarantine(result, "has no data rows")
        return None
    if extra:
        names = ", ".join(f"'{landing.display_name(c)}'" for c in extra)
        result.reason = (
            f"{result.name}: column{'s' if len(extra) > 1 else ''} {names} not in the configuration, "
            "not stored (extra columns are ignored)"
        )
    return stored
