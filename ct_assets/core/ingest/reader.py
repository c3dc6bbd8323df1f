"""Reading a landed file: Parquet or CSV, chunk by chunk, normalized to the warehouse's types.

A file is read `[ingest] chunk_rows` rows at a time, so memory stays bounded by a chunk whatever the
file's size. Anything that makes the file unreadable whole (empty, truncated, not UTF-8, a value
spanning lines, two columns of one name) raises UnreadableDelta; a value the warehouse's column type
cannot hold raises StoreError naming the column.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import polars as pl

from ct_assets.config.settings import Settings
from ct_assets.core.ingest import landing
from ct_assets.core.ingest.quality import Outcome
from ct_assets.store.schema import raw_delta_columns

PARQUET_BATCH_ROWS = 65_536  # rows per Parquet read batch (batches are gathered into chunks)


CSV_BLOCK_BYTES = 4 << 20  # bytes per CSV read block


class UnreadableDelta(Exception):
    """The file cannot be read whole (empty, truncated, corrupted, not UTF-8, ...)."""


class StoreError(Exception):
    """A value the warehouse's column type cannot hold (a row id of 1.5, say)."""

    def __init__(self, column: str, sql_type: str, what: str):
        super().__init__(f"column '{column}' cannot be stored as {sql_type}: {what}")
        self.column, self.sql_type, self.what = column, sql_type, what

    def outcome(self) -> Outcome:
        """The failure as a row of the schema check's table, beside the suite's expectations."""
        return Outcome(
            check="raw_deltas_schema_valid",
            expectation=f"values fit the warehouse type {self.sql_type}",
            column=self.column,
            success=False,
            observed=self.what,
            unexpected_count=None,
            element_count=None,
        )


def _first_line(e: BaseException, limit: int = 160) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return landing.display_name(text[:limit])


def read_chunks(
    path: Path, settings: Settings, chunk_rows: int | None = None
) -> Generator[pl.DataFrame, None, None]:
    """The file's rows, normalized, at most `chunk_rows` (default `[ingest] chunk_rows`) at a time.

    Raises UnreadableDelta, possibly after some chunks were yielded, when the file cannot be read
    whole: a caller must read to the end before it trusts any chunk."""
    rows = chunk_rows or settings.ingest_chunk_rows
    is_csv = not path.name.lower().endswith(".parquet")
    kind = "CSV (UTF-8)" if is_csv else "Parquet"
    try:
        size = path.stat().st_size
    except OSError as e:
        raise UnreadableDelta(f"cannot be opened: {e.strerror}") from None
    if size == 0:
        raise UnreadableDelta("is empty (0 bytes)")
    tables = _rechunk(_csv_batches(path) if is_csv else _parquet_batches(path), rows)
    offset = 0  # data rows before this chunk
    while True:
        try:
            table = next(tables, None)
            if table is None:
                return
            frame = pl.from_arrow(table)
        except UnreadableDelta:
            raise
        except Exception as e:  # pyarrow raises several types for broken files; all mean "unreadable"
            raise UnreadableDelta(f"is not a readable {kind} file: {_first_line(e)}") from None
        assert isinstance(frame, pl.DataFrame)
        if is_csv:
            _no_line_breaks(frame, offset)
            frame = parse_csv_text(frame, settings)
        offset += frame.height
        yield normalize(frame, settings)


def _no_line_breaks(frame: pl.DataFrame, offset: int) -> None:
    """A CSV value may not hold a line break: a quote left open swallows the following lines into one
    value, and the file would be half-read (its rows after that lost without a trace)."""
    for name in frame.columns:
        col = frame.get_column(name)
        if col.dtype != pl.String:
            continue
        hit = (col.str.contains("\n", literal=True) | col.str.contains("\r", literal=True)).fill_null(False)
        if hit.any():
            row = offset + int(hit.arg_true()[0]) + 1
            raise UnreadableDelta(
                f"column '{landing.display_name(name)}' has a line break inside a value in data row {row} "
                "(an unclosed quote?); a value may not span lines"
            )


def _unique_names(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise UnreadableDelta(
                f"has two columns named '{landing.display_name(name)}' (a column name may appear once)"
            )
        seen.add(name)


def _csv_batches(path: Path) -> Iterator[Any]:
    """Arrow record batches of a CSV file, every column as text; a row with too few or too many
    fields, an unclosed quote, bytes that are not UTF-8, or a missing final line break (a file cut
    off mid-row) make the file unreadable rather than half-read."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) not in (b"\n", b"\r"):
            raise UnreadableDelta(
                "does not end with a line break, so its last row may be cut off (a truncated file?)"
            )
    read = pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    probe = pacsv.open_csv(path, read_options=read, parse_options=parse)
    names = list(probe.schema.names)
    probe.close()
    _unique_names(names)
    convert = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names},
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        check_utf8=True,
    )
    reader = pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
    try:
        yield from reader
    finally:
        reader.close()


def _parquet_batches(path: Path) -> Iterator[Any]:
    """Arrow record batches of a Parquet file, one batch at a time (page checksums, when the writer
    stored them, are verified: damage inside a data page is otherwise invisible to any reader)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path, page_checksum_verification=True, pre_buffer=False, buffer_size=1 << 20)
    try:
        _unique_names(list(pf.schema_arrow.names))
        yield from pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, use_threads=False)
    finally:
        pf.close()


def _rechunk(batches: Iterator[Any], rows: int) -> Iterator[Any]:
    """Arrow tables of exactly `rows` rows (the last one shorter) from record batches of any size."""
    import pyarrow as pa

    pending: list[Any] = []
    have = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - have, batch.num_rows)
            pending.append(batch.slice(0, take))
            have += take
            batch = batch.slice(take)
            if have == rows:
                yield pa.Table.from_batches(pending)
                pending, have = [], 0
    if have:
        yield pa.Table.from_batches(pending)


def parse_csv_text(frame: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """A CSV's configured numeric columns, read as text, parsed to numbers by the configuration (not
    guessed from the first rows, so every chunk of a file gets the same types). A column with a value
    that is not a number stays text, and the suite's type expectation rejects it."""
    cols = settings.columns
    wanted: dict[str, tuple[pl.DataType, ...]] = {
        f.name: (pl.Float64(),) for f in settings.features if f.kind == "numeric"
    }
    if cols.row_id and cols.row_id_type == "integer":
        wanted[cols.row_id] = (pl.Int64(), pl.Float64())
    if not cols.label_is_text:
        wanted[cols.label] = (pl.Int64(), pl.Float64())
    if cols.exploration:
        wanted[cols.exploration] = (pl.Int64(), pl.Float64())
    parsed = []
    for name, types in wanted.items():
        if name not in frame.columns or frame.schema[name] != pl.String:
            continue
        text = frame.get_column(name)
        for dtype in types:
            values = text.cast(dtype, strict=False)
            if values.null_count() == text.null_count():
                parsed.append(values)
                break
    return frame.with_columns(parsed) if parsed else frame


def normalize(frame: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """Bring parseable representations to the warehouse's types (times to naive UTC microseconds,
    categoricals to text, NaN to null); anything else is left for the expectations to judge."""
    times = {settings.columns.event_time, settings.columns.label_time}
    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if name in times:
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
        elif dtype in (pl.Float32, pl.Float64):
            exprs.append(col.fill_nan(None))  # NaN is missing: null for the suite and the warehouse
        elif dtype == pl.Boolean and name == settings.columns.label and not settings.columns.label_is_text:
            exprs.append(col.cast(pl.Int64).alias(name))
        else:
            exprs.append(col)
    return frame.select(exprs)


_STORED_TYPES: dict[str, pl.DataType] = {
    "TIMESTAMP": pl.Datetime("us"),
    "BIGINT": pl.Int64(),
    "DOUBLE": pl.Float64(),
    "VARCHAR": pl.String(),
    "BOOLEAN": pl.Boolean(),
}


def label_columns(settings: Settings, present: list[str]) -> list[tuple[str, str]]:
    """(name, type) of a label file's columns as they are stored: row id, label, label time if present."""
    typed = dict(raw_delta_columns(settings))
    cols = settings.columns
    assert cols.row_id
    out = [(cols.row_id, typed[cols.row_id]), (cols.label, typed[cols.label])]
    if cols.label_time and cols.label_time in present:
        out.append((cols.label_time, "TIMESTAMP"))
    return out


def to_stored(
    frame: pl.DataFrame, settings: Settings, columns: list[tuple[str, str]] | None = None
) -> pl.DataFrame:
    """The frame as the warehouse stores it: configured columns (or `columns`), in order, with their types.

    Raises StoreError naming the column when a value cannot be stored without changing it."""
    out = []
    for name, sql_type in columns or raw_delta_columns(settings):
        col = frame.get_column(name)
        if sql_type == "BIGINT" and col.dtype.is_float():
            fractional = col.filter(col.is_finite() & (col != col.floor()))
            if len(fractional):
                raise StoreError(
                    name,
                    sql_type,
                    f"{len(fractional)} of {len(col)} values are not whole numbers (e.g. {fractional[0]!r})",
                )
        try:
            out.append(col.cast(_STORED_TYPES[sql_type], strict=True))
        except pl.exceptions.PolarsError as e:
            raise StoreError(name, sql_type, _first_line(e)) from None
    return pl.DataFrame(out).with_columns(pl.selectors.float().fill_nan(None))
