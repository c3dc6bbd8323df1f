"""Small builders for the metadata the Dagster UI shows: tables from rows of plain values."""

import math
import time
from collections.abc import Sequence
from typing import Any

import dagster as dg

_TYPES = {bool: "bool", int: "int", float: "float"}


def _cell(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, limit: int = 200
) -> dg.MetadataValue:
    """A metadata table; column types come from the first non-null value of each column."""
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


class Stopwatch:
    """Seconds spent in the named phases of a step, for its metadata (where a step's time goes)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        """Close `phase`: the time since the previous lap (or since the start)."""
        now = time.perf_counter()
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + now - self._last, 3)
        self._last = now
