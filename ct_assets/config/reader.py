"""Typed reading of one TOML table, with errors that name the file, the table and the key."""

from __future__ import annotations

import math
from typing import Any

from ct_assets.config.settings import INTERNAL_PREFIX
from ct_assets.errors import ConfigError


class TableReader:
    """Typed access to one TOML table with errors that name the file, table and key."""

    def __init__(self, table: dict[str, Any], where: str, source: str, known: set[str] | None = None):
        self.table, self.where, self.source = table, where, source
        if known is not None:
            unknown = sorted(set(table) - known)
            if unknown:
                raise self.error(unknown[0], f"is not a known setting (known: {', '.join(sorted(known))})")

    def error(self, key: str, what: str) -> ConfigError:
        place = f"[{self.where}] {key}" if self.where else key
        return ConfigError(f"config {self.source}: {place} {what}")

    def get(self, key: str) -> Any:
        if key not in self.table:
            raise self.error(key, "is missing")
        return self.table[key]

    def text(self, key: str, *, allow_empty: bool = False) -> str:
        v = self.get(key)
        if not isinstance(v, str) or (not allow_empty and not v.strip()):
            raise self.error(key, f"must be a non-empty string, got {v!r}")
        return v

    def number(self, key: str, *, lo: float | None = None, hi: float | None = None) -> float:
        v = self.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise self.error(key, f"must be a number, got {v!r}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise self.error(key, f"must be within [{lo}, {hi}], got {v!r}")
        return float(v)

    def integer(self, key: str, *, lo: int = 0) -> int:
        v = self.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise self.error(key, f"must be an integer >= {lo}, got {v!r}")
        return v

    def table_of(self, key: str) -> dict[str, Any]:
        v = self.get(key)
        if not isinstance(v, dict):
            raise self.error(key, "must be a table")
        return v


def one_line(text: str) -> str:
    """`text` with control characters written as escapes, so that an error stays on one line."""
    return "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text)


def check_identifier(name: str, what: str, source: str) -> str:
    """Column names are quoted in SQL; refuse the few that could still confuse a reader or a file system
    (empty, too long, padded, or holding control characters such as NUL or a line break)."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > 128
        or name != name.strip()
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
    ):
        raise ConfigError(one_line(f"config {source}: {what} {name!r} is not a usable column name"))
    if name.startswith(INTERNAL_PREFIX):
        raise ConfigError(f"config {source}: {what} {name!r} starts with '_', which the warehouse reserves")
    return name
