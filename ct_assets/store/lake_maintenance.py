"""DuckLake maintenance, for cluster mode's warehouse.

Every ingest appends its rows as new Parquet files, and DuckLake never deletes a file by itself: over
months the lake becomes thousands of small files, and every read lists and opens them all. `maintain`
merges adjacent small files of each table (the same rows and values: every read of ct_assets orders its
rows itself and checks their stored hashes), expires the snapshots older than `keep_days` (nothing in
ct_assets reads an old snapshot: data sets are selections by batch id) and deletes the files that only
those referenced, once they have waited `grace_hours` (a read that started before may still scan them).
It holds the warehouse's writer lock, so no append or registry write races the merge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import duckdb

from ct_assets.config import Settings
from ct_assets.errors import CtError
from ct_assets.store.lake import ALIAS
from ct_assets.store.sql import fetch_value
from ct_assets.store.warehouse import connect_writer

KEEP_DAYS = 7
GRACE_HOURS = 24


@dataclass(frozen=True)
class Maintenance:
    """What one maintenance did."""

    files_before: int  # data files the current snapshot reads, before and after
    files_after: int
    snapshots_expired: int
    files_deleted: int  # from storage: merged away or only in expired snapshots, past their grace time
    seconds: float


def live_files(con: duckdb.DuckDBPyConnection) -> int:
    """Data files of every table that the current snapshot reads."""
    return int(
        fetch_value(
            con,
            f"SELECT count(*) FROM __ducklake_metadata_{ALIAS}.ducklake_data_file WHERE end_snapshot IS NULL",
        )
        or 0
    )


def maintain(
    settings: Settings, *, keep_days: int = KEEP_DAYS, grace_hours: int = GRACE_HOURS
) -> Maintenance:
    """Merge small files, expire old snapshots, delete files no snapshot needs (see the module docstring)."""
    if settings.cluster is None:
        raise CtError(
            "lake maintenance is for cluster mode's DuckLake warehouse; the embedded DuckDB file needs none"
        )
    started = time.perf_counter()
    with connect_writer(settings) as con:
        before = live_files(con)
        con.execute(f"CALL ducklake_merge_adjacent_files('{ALIAS}')").fetchall()
        expired = con.execute(
            f"CALL ducklake_expire_snapshots('{ALIAS}', older_than => now() - INTERVAL {int(keep_days)} DAY)"
        ).fetchall()
        deleted = con.execute(
            f"CALL ducklake_cleanup_old_files('{ALIAS}', older_than => now() - INTERVAL {int(grace_hours)} HOUR)"
        ).fetchall()
        after = live_files(con)
    return Maintenance(before, after, len(expired), len(deleted), time.perf_counter() - started)
