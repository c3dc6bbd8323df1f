"""The warehouse's user columns as the config names them: (name, DuckDB type), in table order."""

from __future__ import annotations

from ct_assets.config.settings import Settings


def raw_delta_columns(settings: Settings) -> list[tuple[str, str]]:
    """(name, DuckDB type) of the user columns of raw_deltas, in table order."""
    cols = settings.columns
    out = [(cols.event_time, "TIMESTAMP")]
    if cols.row_id:
        out.append((cols.row_id, "BIGINT" if cols.row_id_type == "integer" else "VARCHAR"))
    for f in settings.features:
        out.append((f.name, "DOUBLE" if f.kind == "numeric" else "VARCHAR"))
    out.append((cols.label, "VARCHAR" if cols.label_is_text else "BIGINT"))
    if cols.exploration:
        out.append((cols.exploration, "BOOLEAN"))
    return out
