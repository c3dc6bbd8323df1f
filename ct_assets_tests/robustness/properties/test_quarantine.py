"""A delta that validation rejects (one value out of range, missing, of an unknown category or class,
a repeated id, a time out of its window, a missing or mistyped column, no rows, or a truncated file) is
quarantined whole: nothing of it is appended, and the file sits in the quarantine with its reason."""

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.store.hashing import file_sha256
from ct_assets.store.sql import fetch_value
from ct_assets.store.warehouse import connect_reader
from ct_assets_tests.robustness.properties.strategies import (
    BY_NAME,
    COLUMNS,
    EARLIEST,
    INT64,
    LATEST,
    MAX_AGE_DAYS,
    NOW,
    ROW_ID,
    SCHEMA,
    TIME,
    Column,
    folder_names,
    fresh_warehouse,
    ingesting,
    land,
    valid_deltas,
    with_value,
)


def _pick(draw: st.DrawFn, columns: list[Column], n: int) -> tuple[Column, int]:
    return draw(st.sampled_from(columns)), draw(st.integers(0, n - 1))


def out_of_range(draw: st.DrawFn, f: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    bounded = [c for c in COLUMNS if c.role == "numeric" and (c.lo is not None or c.hi is not None)]
    c, row = _pick(draw, bounded, f.height)
    above = c.hi is not None and (c.lo is None or draw(st.booleans()))
    value = draw(
        st.floats(min_value=c.hi, exclude_min=True, allow_nan=False)
        if above
        else st.floats(max_value=c.lo, exclude_max=True, allow_nan=False)
    )
    return f"{c.name}[{row}] = {value!r}", with_value(f, c.name, row, value)


def missing_required(draw: st.DrawFn, f: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    c, row = _pick(draw, [c for c in COLUMNS if c.required], f.height)
    value = draw(st.sampled_from([None, math.nan])) if c.dtype == pl.Float64 else None
    return f"{c.name}[{row}] = {value!r}", with_value(f, c.name, row, value)


def unknown_category(draw: st.DrawFn, f: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    c, row = _pick(draw, [c for c in COLUMNS if c.role == "categorical" and c.choices], f.height)
    value = draw(st.text(max_size=12).filter(lambda v: v not in (c.choices or ())))
    return f"{c.name}[{row}] = {value!r}", with_value(f, c.name, row, value)


def label_outside_classes(draw: st.DrawFn, f: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    c = BY_NAME[SCHEMA.columns.label]
    row = draw(st.integers(0, f.height - 1))
    value = draw(st.integers(*INT64).filter(lambda v: v not in (c.choices or ())))
    return f"{c.name}[{row}] = {value!r}", with_value(f, c.name, row, value)


def duplicate_row_id(draw: st.DrawFn, f: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    src, dst = draw(st.lists(st.integers(0, f.height - 1), min_size=2, max_size=2, unique=True))
    return f"row {dst} takes the id of row {src}", with_value(f, ROW_ID, dst, f[ROW_ID][src])


def event_time_out_of_window(draw: st.DrawFn, f: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    row = draw(st.integers(0, f.height - 1))
    tick = timedelta(microseconds=1)
    future = st.datetimes(LATEST + tick, datetime(9999, 1, 1))
    too_old = st.datetimes(datetime(1, 1, 1), EARLIEST - tick)
    value = draw(st.one_of(future, too_old) if MAX_AGE_DAYS > 0 else future)
    return f"{TIME}[{row}] = {value}", with_value(f, TIME, row, value)


def missing_column(draw: st.DrawFn, f: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    c = draw(st.sampled_from(COLUMNS))
    renamed = draw(st.booleans())
    if renamed:  # a misspelled header, as producers sometimes send
        return f"{c.name} renamed", f.rename({c.name: c.name + "_x"})
    return f"{c.name} dropped", f.drop(c.name)


def wrong_type(draw: st.DrawFn, f: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    c = draw(st.sampled_from(COLUMNS))
    if c.dtype == pl.String:
        new = pl.Series(c.name, range(f.height), dtype=pl.Int64)  # numbers where text belongs
    elif c.dtype == pl.Datetime("us"):
        new = f[c.name].dt.epoch("s")  # epoch seconds are not a time type
    else:
        new = f[c.name].cast(pl.String)  # numbers written as text
    return f"{c.name} as {new.dtype}", f.with_columns(new.alias(c.name))


def no_rows(draw: st.DrawFn, f: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    return "no rows", f.head(0)


BREAKAGES: list[Callable[[st.DrawFn, pl.DataFrame], tuple[str, pl.DataFrame]]] = [
    out_of_range,
    missing_required,
    unknown_category,
    label_outside_classes,
    duplicate_row_id,
    event_time_out_of_window,
    missing_column,
    wrong_type,
    no_rows,
]


@dataclass
class BadDelta:
    what: str
    frame: pl.DataFrame
    truncate_at: int | None  # cut the Parquet file to this many bytes: an unreadable file


@st.composite
def invalid_deltas(draw: st.DrawFn) -> BadDelta:
    """A valid delta (in stored form) with one thing wrong that the suite must catch, or a truncated file."""
    frame = draw(valid_deltas(min_rows=2, max_rows=15)).expected
    if draw(st.integers(0, len(BREAKAGES))) == len(BREAKAGES):
        return BadDelta("truncated file", frame, draw(st.integers(0, 10**6)))
    breakage = draw(st.sampled_from(BREAKAGES))
    what, bad = breakage(draw, frame)
    return BadDelta(f"{breakage.__name__}: {what}", bad, None)


@ingesting(20)
@given(bad=invalid_deltas())
def test_a_rejected_delta_is_quarantined_whole_never_partly_appended(bad: BadDelta) -> None:
    with fresh_warehouse() as s:
        path = land(s, bad.frame)
        if bad.truncate_at is not None:
            data = path.read_bytes()
            path.write_bytes(data[: bad.truncate_at % len(data)])
        landed_sha = file_sha256(path)
        (res,) = ingest_landed_files(s, now=NOW).files
        assert res.status == "quarantined", f"{bad.what} was {res.status}"
        assert res.reason.startswith(f"{path.name}: ") and "\n" not in res.reason
        assert (res.rows, res.batch_id) == (0, None)

        with connect_reader(s) as con:
            appended = fetch_value(con, "SELECT count(*) FROM raw_deltas")
            logs = con.execute("SELECT status, batch_id, rows, reason FROM ingest_log").fetchall()
        assert appended == 0, f"{bad.what}: {appended} rows appended"
        assert logs == [("quarantined", None, 0, res.reason)]
        # The whole file, byte for byte, sits in the quarantine with its reason beside it.
        assert folder_names(s.paths.landing) == []
        assert folder_names(s.paths.archive) == []
        assert folder_names(s.paths.quarantine) == sorted([path.name, path.name + ".reason.txt"])
        assert file_sha256(s.paths.quarantine / path.name) == landed_sha
        reason_text = (s.paths.quarantine / (path.name + ".reason.txt")).read_text(encoding="utf-8")
        assert reason_text.splitlines()[0] == res.reason
