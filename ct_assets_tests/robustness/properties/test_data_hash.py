"""The data hash changes when any single value changes (floats by their bits) and does not change
when rows are reordered."""

import struct
from datetime import datetime
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ct_assets_tests.robustness.properties.strategies import (
    BY_NAME,
    COLUMNS,
    INT64,
    Column,
    Delta,
    content_hash,
    valid_deltas,
    with_value,
)


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
