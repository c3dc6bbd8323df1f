"""Properties of ingest, the warehouse and the data hash, checked on frames Hypothesis generates.

(a) a delta that passes validation comes back from the warehouse exactly as it went in (values and
    types, in canonical order), whatever representation the file used for it;
(b) the data hash changes when any single value changes and does not change when rows are reordered;
(c) a delta that validation rejects is quarantined whole: nothing of it is appended.

Each example gets its own folder and DuckDB file (a temporary directory, not a pytest fixture, which
Hypothesis would share between examples). Great Expectations costs about half a second per validated
file, so the ingesting properties run a few dozen examples each.
"""

import contextlib
import functools
import math
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from ct_assets.config import Settings, load_settings
from ct_assets.core.datasets.training import frame_hash
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.store.hashing import AGGREGATE_SQL, data_hash, file_sha256, row_hash_sql
from ct_assets.store.sql import fetch_one, fetch_value, quote
from ct_assets.store.warehouse import connect_reader, init_warehouse

NOW = datetime(2025, 6, 1, 12, 0, 0)  # the ingest's "now"
INT64 = (-(2**63), 2**63 - 1)
EXACT_INT = 2**53  # integers a float64 holds exactly
TIME_ZONES = ("UTC", "Asia/Kolkata", "America/New_York")
STORED_DTYPES: dict[str, pl.DataType] = {
    "TIMESTAMP": pl.Datetime("us"),
    "BIGINT": pl.Int64(),
    "DOUBLE": pl.Float64(),
    "VARCHAR": pl.String(),
    "BOOLEAN": pl.Boolean(),
}


def ingesting(examples: int) -> Callable[[Any], Any]:
    """Hypothesis settings of the properties that ingest (Great Expectations: ~0.5 s an example)."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,  # nothing written into the checkout
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def load_defaults(root: Path) -> Settings:
    """The default configuration (the simulator's schema), with every path inside `root`."""
    config = root / "config.toml"
    config.write_text("# the built-in defaults\n")
    return load_settings(config, cwd=root)


with tempfile.TemporaryDirectory() as _tmp:
    SCHEMA = load_defaults(Path(_tmp))  # only its columns are used, to build the strategies


@contextlib.contextmanager
def fresh_warehouse() -> Iterator[Settings]:
    """A new project folder with an initialised warehouse, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="ct_props_") as tmp:
        s = load_defaults(Path(tmp))
        init_warehouse(s)
        yield s


# ------------------------------------------------------------------------------------- the schema


@dataclass(frozen=True)
class Column:
    """One stored column and what the configuration allows in it."""

    name: str
    role: str  # time | id | numeric | categorical | label | flag
    sql_type: str
    required: bool
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] | None = None

    @property
    def dtype(self) -> pl.DataType:
        return STORED_DTYPES[self.sql_type]


def schema_columns(s: Settings) -> list[Column]:
    """The stored columns of `s`, in table order, with their roles and constraints."""
    cols = s.columns
    out = [Column(cols.event_time, "time", "TIMESTAMP", True)]
    if cols.row_id:
        out.append(Column(cols.row_id, "id", "BIGINT" if cols.row_id_type == "integer" else "VARCHAR", True))
    for f in s.features:
        if f.kind == "numeric":
            out.append(Column(f.name, "numeric", "DOUBLE", f.required, f.min, f.max))
        else:
            out.append(Column(f.name, "categorical", "VARCHAR", f.required, choices=f.categories))
    out.append(
        Column(
            cols.label,
            "label",
            "VARCHAR" if cols.label_is_text else "BIGINT",
            False,
            choices=cols.label_classes,
        )
    )
    if cols.exploration:
        out.append(Column(cols.exploration, "flag", "BOOLEAN", True))
    return out


# Valid event times: not older than [freshness] max_event_age_days, not later than max_future_minutes.
MAX_AGE_DAYS = float(getattr(SCHEMA.freshness, "max_event_age_days", 0.0))
EARLIEST = NOW - timedelta(days=MAX_AGE_DAYS) if MAX_AGE_DAYS > 0 else datetime(1900, 1, 1)
LATEST = NOW + timedelta(minutes=SCHEMA.freshness.max_future_minutes)
COLUMNS = schema_columns(SCHEMA)
BY_NAME = {c.name: c for c in COLUMNS}
TIME = COLUMNS[0].name
ROW_ID = SCHEMA.columns.row_id
assert ROW_ID, "these properties use the default schema, which has row ids"


def numeric_bounds(c: Column) -> tuple[float, float]:
    # Unbounded numerics are checked against +-1e308 (see quality.FINITE_LIMIT).
    return (c.lo if c.lo is not None else -1.0e308, c.hi if c.hi is not None else 1.0e308)


def valid_values(c: Column) -> st.SearchStrategy[Any]:
    """Values the configuration allows in a column (row ids are drawn per frame, to be unique)."""
    if c.role == "time":
        return st.datetimes(EARLIEST, LATEST)
    if c.role == "numeric":
        lo, hi = numeric_bounds(c)
        finite = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
        # A NaN in a nullable column is a missing value: stored as NULL.
        return finite if c.required else st.one_of(st.none(), st.just(math.nan), finite)
    if c.role == "categorical":
        known = st.sampled_from(c.choices) if c.choices else st.text(max_size=12)
        return known if c.required else st.one_of(st.none(), known)
    if c.role == "label":
        return st.one_of(st.none(), st.sampled_from(c.choices or ()))
    if c.role == "flag":
        return st.booleans()
    raise AssertionError(c.role)


def stored_series(c: Column, values: list[Any]) -> pl.Series:
    """The column as the warehouse stores it (NaN is a missing value)."""
    out = pl.Series(c.name, values, dtype=c.dtype, strict=False)
    return out.fill_nan(None) if c.dtype == pl.Float64 else out


@dataclass
class Delta:
    """A landed file's frame and the rows the warehouse should hold for it."""

    file: pl.DataFrame
    expected: pl.DataFrame  # stored column order and types
    representation: dict[str, str]


@st.composite
def valid_deltas(draw: st.DrawFn, min_rows: int = 1, max_rows: int = 20) -> Delta:
    """A delta the configured suite accepts, in one of the representations a producer may use:
    integer numerics, dictionary-encoded categories, event times in ns or in a time zone, narrow label
    integers, any column order, and a column the configuration does not name."""
    n = draw(st.integers(min_rows, max_rows))
    file_cols: dict[str, pl.Series] = {}
    expected: dict[str, pl.Series] = {}
    rep: dict[str, str] = {}
    for c in COLUMNS:
        if c.role == "id":
            ids = draw(
                st.lists(st.integers(*INT64), min_size=n, max_size=n, unique=True)
                if c.sql_type == "BIGINT"
                else st.lists(st.text(min_size=1, max_size=12), min_size=n, max_size=n, unique=True)
            )
            expected[c.name] = file_cols[c.name] = stored_series(c, ids)
            continue
        if c.role == "numeric" and draw(st.booleans()):
            lo, hi = numeric_bounds(c)
            ints = st.integers(max(math.ceil(lo), -EXACT_INT), min(math.floor(hi), EXACT_INT))
            values = draw(
                st.lists(ints if c.required else st.one_of(st.none(), ints), min_size=n, max_size=n)
            )
            rep[c.name] = "Int64"
            file_cols[c.name] = pl.Series(c.name, values, dtype=pl.Int64)
            expected[c.name] = stored_series(c, values)
            continue
        values = draw(st.lists(valid_values(c), min_size=n, max_size=n))
        stored = stored_series(c, values)
        expected[c.name] = stored
        shown = stored
        if c.role == "numeric":
            shown = pl.Series(c.name, values, dtype=pl.Float64)  # NaN kept in the file
        elif c.role == "time":
            rep[c.name] = draw(st.sampled_from(("naive us", "naive ns", *TIME_ZONES)))
            if rep[c.name] == "naive ns":
                shown = stored.cast(pl.Datetime("ns"))
            elif rep[c.name] in TIME_ZONES:
                shown = stored.dt.replace_time_zone("UTC").dt.convert_time_zone(rep[c.name])
        elif c.role == "categorical" and draw(st.booleans()):
            rep[c.name] = "Categorical"
            shown = stored.cast(pl.Categorical)
        elif c.role == "label" and c.sql_type == "BIGINT":
            rep[c.name] = draw(st.sampled_from(("Int64", "Int32", "Int8")))
            shown = stored.cast(getattr(pl, rep[c.name]))
        file_cols[c.name] = shown
    order = draw(st.permutations(list(file_cols)))
    frame = pl.DataFrame([file_cols[name] for name in order])
    if draw(st.booleans()):
        rep["extra column"] = "note"
        frame = frame.with_columns(
            pl.Series("note", draw(st.lists(st.text(max_size=8), min_size=n, max_size=n)))
        )
    return Delta(frame, pl.DataFrame([expected[c.name] for c in COLUMNS]), rep)


# ----------------------------------------------------------------------------------------- helpers


@functools.cache
def scratch() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB for hashing frames (opening one costs tens of milliseconds)."""
    return duckdb.connect()


def content_hash(frame: pl.DataFrame) -> str:
    """The data hash of rows in stored form, computed as ingest computes it (row_hash_sql, then
    AGGREGATE_SQL), and checked against the numpy path (datasets.frame_hash) on the same row hashes."""
    names = [c.name for c in COLUMNS]
    con = scratch()
    con.register("rows_in", frame.to_arrow())
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE hashed AS SELECT {row_hash_sql(names, 'd')} AS _row_hash FROM rows_in d"
        )
        row = fetch_one(con, f"SELECT {AGGREGATE_SQL} FROM hashed")
        hashes = con.sql("SELECT _row_hash FROM hashed").pl()["_row_hash"].to_numpy()
    finally:
        con.unregister("rows_in")
    assert row is not None
    by_sql = data_hash(*row)
    assert frame_hash(hashes) == by_sql, "the SQL and numpy paths of the data hash disagree"
    return by_sql


def float_bits(s: pl.Series) -> list[int | None]:
    return [None if v is None else struct.unpack("<Q", struct.pack("<d", v))[0] for v in s.to_list()]


def assert_identical(got: pl.DataFrame, want: pl.DataFrame) -> None:
    """Same columns, types and values, float values bit for bit (so -0.0 is not 0.0)."""
    assert_frame_equal(got, want, check_exact=True, check_dtypes=True, check_column_order=True)
    for name, dtype in want.schema.items():
        if dtype == pl.Float64:
            assert float_bits(got[name]) == float_bits(want[name]), name


def canonical(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort([TIME, ROW_ID])


def land(s: Settings, frame: pl.DataFrame, name: str = "delta.parquet") -> Path:
    path = s.paths.landing / name
    frame.write_parquet(path)
    return path


def folder_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --------------------------------------------------------------------------- (a) round trip, exact


@ingesting(25)
@given(delta=valid_deltas())
def test_a_valid_delta_round_trips_unchanged_through_the_warehouse(delta: Delta) -> None:
    n = delta.expected.height
    with fresh_warehouse() as s:
        landed = land(s, delta.file)
        landed_sha = file_sha256(landed)
        (res,) = ingest_landed_files(s, now=NOW).files
        assert res.status == "ingested", f"{res.reason} (representation {delta.representation})"
        assert (res.rows, res.rows_duplicate) == (n, 0)
        assert res.rows_labelled == delta.expected[SCHEMA.columns.label].count()

        names = ", ".join(quote(c.name) for c in COLUMNS)
        with connect_reader(s) as con:
            got = con.sql(
                f"SELECT {names} FROM raw_deltas WHERE _batch_id = $batch ORDER BY {quote(TIME)}, {quote(ROW_ID)}",
                params={"batch": res.batch_id},
            ).pl()
            total = fetch_value(con, "SELECT count(*) FROM raw_deltas")
            log = fetch_one(con, "SELECT status, batch_id, rows, data_hash, file_hash FROM ingest_log")
        assert_identical(got, canonical(delta.expected))
        assert total == n
        # The recorded data hash is the hash of exactly these rows.
        assert log == ("ingested", res.batch_id, n, content_hash(delta.expected), landed_sha)
        # The file itself is kept as landed, in the archive.
        assert folder_names(s.paths.landing) == []
        assert file_sha256(s.paths.archive / landed.name) == landed_sha


# ---------------------------------------------------------------------------------- (b) data hash


def differs(a: Any, b: Any) -> bool:
    """Whether two stored values differ (floats by their bits: -0.0 is another value than 0.0)."""
    if a is None or b is None:
        return (a is None) != (b is None)
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) != struct.pack("<d", b)
    return bool(a != b)


def any_stored_value(c: Column) -> st.SearchStrategy[Any]:
    """Any value the column's stored type can hold (valid or not: the hash does not judge)."""
    base: st.SearchStrategy[Any]
    if c.sql_type == "TIMESTAMP":
        base = st.datetimes(datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999_999))
    elif c.sql_type == "BIGINT":
        base = st.integers(*INT64)
    elif c.sql_type == "DOUBLE":
        base = st.floats(allow_nan=False)  # NaN is never stored (it becomes NULL)
    elif c.sql_type == "BOOLEAN":
        base = st.booleans()
    else:
        base = st.text(max_size=12)
    return st.one_of(st.none(), base)


def with_value(frame: pl.DataFrame, column: str, row: int, value: Any) -> pl.DataFrame:
    values = frame[column].to_list()
    values[row] = value
    return frame.with_columns(pl.Series(column, values, dtype=frame.schema[column]))


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(delta=valid_deltas(), data=st.data())
def test_data_hash_changes_with_any_single_value_and_not_with_row_order(
    delta: Delta, data: st.DataObject
) -> None:
    rows = delta.expected
    before = content_hash(rows)

    order = data.draw(st.permutations(range(rows.height)), label="row order")
    assert content_hash(rows.select(pl.all().gather(order))) == before

    row = data.draw(st.integers(0, rows.height - 1), label="row")
    column = data.draw(st.sampled_from([c.name for c in COLUMNS]), label="column")
    old = rows[column][row]
    new = data.draw(any_stored_value(BY_NAME[column]).filter(lambda v: differs(v, old)), label="new value")
    changed = with_value(rows, column, row, new)
    assert changed.height == rows.height
    assert content_hash(changed) != before, f"{column}[{row}]: {old!r} -> {new!r} kept the hash"


# ------------------------------------------------------------------- (c) rejected means quarantined


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
