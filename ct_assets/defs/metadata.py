"""Small builders for the metadata the Dagster UI shows: tables from rows of plain values, floats at
four significant digits (the stored JSON reports keep every digit)."""

import math
from collections.abc import Sequence
from typing import Any

import dagster as dg

_TYPES = {bool: "bool", int: "int", float: "float"}
DIGITS = 4  # significant digits of a float in a table: metrics read as in the HTML report (0.7799)


def _cell(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float):
        return float(f"{value:.{DIGITS}g}") if math.isfinite(value) else None
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, limit: int = 200
) -> dg.MetadataValue:
    """A metadata table; column types come from the first non-null value of each column, floats are
    rounded to DIGITS significant digits."""
    columns = list(columns or (rows[0].keys() if rows else []))
    kinds = {}
    for c in columns:
        sample = next((r.get(c) for r in rows if _cell(r.get(c)) is not None), None)
        kinds[c] = _TYPES.get(type(sample), "string")
    records = []
    for r in rows[:limit]:
        values = {}
        for c in columns:
            v = _cell(r.get(c))
            values[c] = str(v) if kinds[c] == "string" and v is not None else v
        records.append(dg.TableRecord(values))
    schema = dg.TableSchema(columns=[dg.TableColumn(c, kinds[c]) for c in columns])
    return dg.MetadataValue.table(records=records, schema=schema)
