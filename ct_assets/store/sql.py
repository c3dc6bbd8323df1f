"""SQL helpers every warehouse reader and writer uses: quoting identifiers, reading one row, new ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb

# Id allocators of cluster-mode connections (store.warehouse registers one per DuckLake connection):
# allocator(counter name, how many) -> the first of that many fresh ids, from PostgreSQL.
_ALLOCATORS: dict[int, Callable[[str, int], int]] = {}


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


def next_id(con: duckdb.DuckDBPyConnection, table: str, column: str, count: int = 1) -> int:
    """The next integer key of an append-only table, the first of `count` consecutive ones. Embedded:
    max()+1 (callers hold the writer lock). Cluster mode: reserved from a PostgreSQL counter, unique
    whatever the writers."""
    allocate = _ALLOCATORS.get(id(con))
    if allocate is not None:
        return allocate(f"{table}.{column}", count)
    return int(fetch_value(con, f"SELECT coalesce(max({column}), 0) + 1 FROM {table}") or 1)


def register_allocator(con: duckdb.DuckDBPyConnection, allocate: Callable[[str, int], int] | None) -> None:
    """Make next_id on `con` use `allocate` (None: forget it, when the connection closes)."""
    if allocate is None:
        _ALLOCATORS.pop(id(con), None)
    else:
        _ALLOCATORS[id(con)] = allocate


def is_lake(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether `con` works on a DuckLake warehouse (cluster mode), whatever the database is called."""
    kind = fetch_value(con, "SELECT type FROM duckdb_databases() WHERE database_name = current_database()")
    return kind == "ducklake"


def set_meta(con: duckdb.DuckDBPyConnection, key: str, value: str, *, keep: bool = False) -> None:
    """Set meta[key] (with `keep`, only when absent). DuckLake has no ON CONFLICT: delete, then insert."""
    if not is_lake(con):
        action = "NOTHING" if keep else "UPDATE SET value = excluded.value"
        con.execute(f"INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO {action}", [key, value])
    elif not keep:
        con.execute("DELETE FROM meta WHERE key = ?", [key])
        con.execute("INSERT INTO meta VALUES (?, ?)", [key, value])
    elif fetch_one(con, "SELECT 1 FROM meta WHERE key = ?", [key]) is None:
        con.execute("INSERT INTO meta VALUES (?, ?)", [key, value])
