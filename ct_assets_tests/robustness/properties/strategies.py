"""The default schema as Hypothesis strategies (valid deltas in every representation a producer may use),
and what the properties share: the data hash computed as ingest computes it, bit-for-bit frame equality,
a fresh warehouse per example (a temporary directory, not a pytest fixture, which Hypothesis would share
between examples)."""

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
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from ct_assets.config import Settings, load_settings
from ct_assets.core.datasets.training import frame_hash
from ct_assets.store.hashing import AGGREGATE_SQL, data_hash, row_hash_sql
from ct_assets.store.sql import fetch_one
from ct_assets.store.warehouse import init_warehouse

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


def with_value(frame: pl.DataFrame, column: str, row: int, value: Any) -> pl.DataFrame:
    values = frame[column].to_list()
    values[row] = value
    return frame.with_columns(pl.Series(column, values, dtype=frame.schema[column]))
