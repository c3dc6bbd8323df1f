"""The canonical row order and the row key of the warehouse's rows (the configured id, else the row hash)."""

from __future__ import annotations

from ct_assets.config.settings import Settings
from ct_assets.store.sql import quote


def key_order(settings: Settings, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    key = quote(settings.columns.row_id) if settings.columns.row_id else "_row_hash"
    return f"{prefix}{quote(settings.columns.event_time)}, {prefix}{key}"


def key_column(settings: Settings) -> str:
    return quote(settings.columns.row_id) if settings.columns.row_id else "_row_hash"
