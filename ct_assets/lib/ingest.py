"""Ingest landed files into `raw_deltas`: read, validate, append whole or quarantine whole, and log.

Policy, file by file:
- a file whose bytes were already ingested (under any name) is logged as `duplicate` and archived;
- a file that cannot be read, has no rows, or fails the Great Expectations suite is quarantined
  whole, with a one-line reason naming the file, the column and the rule;
- otherwise its rows are appended in one transaction, as one batch; rows whose id is already in the
  warehouse (from an earlier file) are dropped and counted, not appended twice;
- every file gets one ingest_log row, and is then moved out of the landing folder (archive or
  quarantine), so nothing is lost and nothing is read twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from ct_assets.config import Settings
from ct_assets.lib import landing
from ct_assets.lib.hashing import AGGREGATE_SQL, data_hash, file_sha256, row_hash_sql
from ct_assets.lib.quality import Outcome, first_failure, validate_delta
from ct_assets.lib.warehouse import (
    connect_writer,
    fetch_one,
    file_lock,
    next_id,
    quote,
    raw_delta_columns,
    transaction,
)


class UnreadableDelta(Exception):
    """The file cannot be turned into a frame (empty, truncated, not UTF-8, ...)."""


@dataclass
class FileResult:
    name: str
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


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)

    def with_status(self, status: str) -> list[FileResult]:
        return [f for f in self.files if f.status == status]

    @property
    def rows_appended(self) -> int:
        return sum(f.rows for f in self.with_status("ingested"))


def utc_now() -> datetime:
    """Now, as the naive UTC timestamp the warehouse stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def read_delta(path: Path) -> pl.DataFrame:
    """Read one landed file; raise UnreadableDelta with a short reason when it cannot be read."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise UnreadableDelta(f"cannot be opened: {e.strerror}") from None
    if size == 0:
        raise UnreadableDelta("is empty (0 bytes)")
    try:
        if path.name.lower().endswith(".parquet"):
            frame = pl.read_parquet(path)
        else:
            frame = pl.read_csv(path, infer_schema_length=10_000, encoding="utf8")
    except Exception as e:  # polars raises several types for broken files; all mean "unreadable"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        kind = "Parquet" if path.name.lower().endswith(".parquet") else "CSV (UTF-8)"
        raise UnreadableDelta(f"is not a readable {kind} file: {first[:160]}") from None
    if frame.height == 0:
        raise UnreadableDelta("has no data rows")
    return frame


def normalize(frame: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """Bring parseable representations to the warehouse's types (times to naive UTC microseconds,
    categoricals to text); anything else is left for the expectations to judge."""
    et = settings.columns.event_time
    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if name == et:
            if dtype == pl.String:
                col = col.str.to_datetime(strict=False, time_unit="us", time_zone="UTC")
                exprs.append(col.dt.replace_time_zone(None).alias(name))
                continue
            if isinstance(dtype, pl.Datetime):
                if dtype.time_zone:
                    col = col.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
                exprs.append(col.cast(pl.Datetime("us")).alias(name))
                continue
            if dtype == pl.Date:
                exprs.append(col.cast(pl.Datetime("us")).alias(name))
                continue
        if isinstance(dtype, pl.Categorical | pl.Enum):
            exprs.append(col.cast(pl.String).alias(name))
        elif isinstance(dtype, pl.Decimal):
            exprs.append(col.cast(pl.Float64).alias(name))
        elif dtype == pl.Boolean and name == settings.columns.label and not settings.columns.label_is_text:
            exprs.append(col.cast(pl.Int64).alias(name))
        else:
            exprs.append(col)
    return frame.select(exprs)


def to_stored(frame: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """The frame as the warehouse stores it: configured columns, in order, with their types."""
    types: dict[str, pl.DataType] = {
        "TIMESTAMP": pl.Datetime("us"),
        "BIGINT": pl.Int64(),
        "DOUBLE": pl.Float64(),
        "VARCHAR": pl.String(),
    }
    return frame.select(
        pl.col(name).cast(types[t], strict=True) for name, t in raw_delta_columns(settings)
    ).with_columns(pl.selectors.float().fill_nan(None))


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
        pending = files if files is not None else landing.ready_files(settings.paths.landing)
        for lf in pending:
            if lf.path.exists():
                report.files.append(_ingest_one(settings, lf, run_id, now))
    return report


def _ingest_one(settings: Settings, lf: landing.LandedFile, run_id: str, now: datetime) -> FileResult:
    file_hash = file_sha256(lf.path)
    result = FileResult(name=lf.name, status="ingested", file_hash=file_hash)
    stored: pl.DataFrame | None = None
    try:
        frame = normalize(read_delta(lf.path), settings)
        result.outcomes = validate_delta(frame, settings, now)
        failure = first_failure(result.outcomes)
        if failure is not None:
            result.status, result.reason = "quarantined", f"{lf.name}: {failure.describe()}"
        else:
            try:
                stored = to_stored(frame, settings)
            except pl.exceptions.PolarsError as e:
                first = (str(e).strip().splitlines() or ["cast failed"])[0]
                result.status, result.reason = "quarantined", f"{lf.name}: cannot be stored: {first[:160]}"
    except UnreadableDelta as e:
        result.status, result.reason = "quarantined", f"{lf.name}: {e}"

    tag = file_hash[:12]
    with connect_writer(settings) as con, transaction(con):
        known = fetch_one(
            con,
            "SELECT batch_id FROM ingest_log WHERE file_hash = ? AND status = 'ingested' LIMIT 1",
            [file_hash],
        )
        if known is not None:
            result.status = "duplicate"
            result.reason = f"{lf.name}: same content as batch {known[0]}, already ingested"
            result.batch_id = int(known[0])
        elif stored is not None and result.status == "ingested":
            _append(con, settings, stored, result)
        folder = settings.paths.quarantine if result.status == "quarantined" else settings.paths.archive
        target = landing.destination(folder, lf.name, tag)
        result.stored_as = str(target)
        _log(con, result, lf, run_id, now)
    # After the commit: a crash before the move leaves the file in landing, and the next run finds
    # its hash already ingested (logged as a duplicate) or validates it again; nothing is lost.
    if result.status == "quarantined":
        landing.write_reason(target, result.reason, [o.__dict__ for o in result.outcomes if not o.success])
    landing.move(lf.path, target)
    return result


def _append(con, settings: Settings, stored: pl.DataFrame, result: FileResult) -> None:
    """Append the delta as one new batch; drop (and count) rows whose id the warehouse already has."""
    batch_id = next_id(con, "ingest_log", "batch_id")
    cols = [n for n, _ in raw_delta_columns(settings)]
    col_sql = ", ".join(f"d.{quote(c)}" for c in cols)
    con.register("delta_frame", stored.to_arrow())
    try:
        where = ""
        rid = settings.columns.row_id
        if rid:
            where = f"WHERE NOT EXISTS (SELECT 1 FROM raw_deltas r WHERE r.{quote(rid)} = d.{quote(rid)})"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE new_rows AS SELECT {col_sql}, "
            f"CAST(? AS BIGINT) AS _batch_id, {row_hash_sql(cols, 'd')} AS _row_hash "
            f"FROM delta_frame d {where}",
            [batch_id],
        )
        con.execute("INSERT INTO raw_deltas SELECT * FROM new_rows")
        row = fetch_one(
            con,
            f"SELECT {AGGREGATE_SQL}, count({quote(settings.columns.label)}), "
            f"min({quote(settings.columns.event_time)}), max({quote(settings.columns.event_time)}) FROM new_rows",
        )
        assert row is not None
        con.execute("DROP TABLE new_rows")
    finally:
        con.unregister("delta_frame")
    count, total, xor, labelled, tmin, tmax = row
    result.batch_id = batch_id
    result.rows = int(count)
    result.rows_labelled = int(labelled)
    result.rows_duplicate = stored.height - int(count)
    result.min_event_time, result.max_event_time = tmin, tmax
    result.data_hash = data_hash(count, total, xor)


def _log(con, result: FileResult, lf: landing.LandedFile, run_id: str, now: datetime) -> None:
    entry = next_id(con, "ingest_log", "entry_id")
    con.execute(
        "INSERT INTO ingest_log (entry_id, logged_at, file_name, file_hash, file_bytes, status, reason, batch_id, "
        "rows, rows_labelled, rows_duplicate, min_event_time, max_event_time, data_hash, landed_at, stored_as, "
        "run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            entry,
            now,
            lf.name,
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
