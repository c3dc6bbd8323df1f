"""SQL helpers every warehouse reader and writer uses: quoting identifiers, reading one row, new ids."""

from __future__ import annotations

from typing import Any

import duckdb


def quote(name: str) -> str:
    """Quote an identifier for DuckDB SQL (names come from the config, never from data)."""
    return '"' + name.replace('"', '""') + '"'


def fetch_one(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> tuple | None:
    """The first row of a query, or None. Reads the whole result (DuckDB 2 refuses further work on a
    connection whose last result was not read to the end)."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def fetch_value(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> Any:
    row = fetch_one(con, sql, params)
    return row[0] if row else None


def next_id(con: duckdb.DuckDBPyConnection, table: str, column: str) -> int:
    """The next integer key of an append-only table (callers hold the writer lock)."""
    return int(fetch_value(con, f"SELECT coalesce(max({column}), 0) + 1 FROM {table}") or 1)
