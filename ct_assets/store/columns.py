"""The warehouse's user columns as the config names them: (name, DuckDB type), in table order."""

from __future__ import annotations

from ct_assets.config.settings import Settings


def raw_delta_columns(settings: Settings) -> list[tuple[str, str]]:
    """(name, DuckDB type) of the user columns of raw_deltas, in table order."""
    cols = settings.columns
    out = [(cols.event_time, "TIMESTAMP")]
    if cols.row_id:
        out.append(row_key(settings))
    for f in settings.features:
        out.append((f.name, "DOUBLE" if f.kind == "numeric" else "VARCHAR"))
    out.append((cols.label, "VARCHAR" if cols.label_is_text else "BIGINT"))
    if cols.exploration:
        out.append((cols.exploration, "BOOLEAN"))
    return out


def row_key(settings: Settings) -> tuple[str, str]:
    """(name, DuckDB type) of the column that keys a row within its batch: its id, or `_row_hash` (a hash
    of its values) when rows have no id."""
    cols = settings.columns
    if cols.row_id:
        return cols.row_id, "BIGINT" if cols.row_id_type == "integer" else "VARCHAR"
    return "_row_hash", "UBIGINT"
