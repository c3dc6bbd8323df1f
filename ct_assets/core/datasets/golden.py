"""The golden set: frozen, stratified by slice, identified by its content hash, never trained on."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl

from ct_assets.common.clock import utc_now
from ct_assets.config.settings import Settings
from ct_assets.core import registry
from ct_assets.core.datasets.keys import key_order
from ct_assets.core.triggers.snapshot import writer_keeping_snapshot
from ct_assets.errors import DataError
from ct_assets.store.hashing import AGGREGATE_SQL, data_hash, key_hash_sql
from ct_assets.store.schema import raw_delta_columns
from ct_assets.store.sql import fetch_one, fetch_value, next_id, quote
from ct_assets.store.warehouse import transaction


@dataclass(frozen=True)
class GoldenInfo:
    golden_hash: str
    rows: int
    max_batch_id: int
    slice_counts: dict[str, dict[str, int]]
    created_at: datetime
    reused: bool = False


def active_golden(con: duckdb.DuckDBPyConnection) -> GoldenInfo | None:
    row = fetch_one(
        con,
        "SELECT golden_hash, rows, max_batch_id, slice_counts, created_at FROM golden_versions "
        "ORDER BY build_id DESC LIMIT 1",
    )
    if row is None:
        return None
    return GoldenInfo(row[0], int(row[1]), int(row[2]), json.loads(row[3] or "{}"), row[4], reused=True)


def golden_quotas(cells: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """How many rows to take from each slice cell (one combination of slice values).

    The golden fraction of each cell, scaled down to golden_max_rows, then raised so that every value
    of every slice column gets at least golden_min_rows_per_slice rows (or all it has): coverage wins
    over the cap. A value's deficit is spread over its cells in proportion to their spare rows.
    """
    ds = settings.dataset
    n = [int(x) for x in cells["n"].to_list()]
    quota = [min(c, math.ceil(c * ds.golden_fraction)) for c in n]
    total = sum(quota)
    if total > ds.golden_max_rows:
        factor = ds.golden_max_rows / total
        quota = [min(c, max(1, math.floor(q * factor))) if q else 0 for q, c in zip(quota, n, strict=True)]
    groups = [
        [i for i, x in enumerate(values) if x == v]
        for values in (cells[col].to_list() for col in settings.columns.slices)
        for v in dict.fromkeys(values)
    ]
    for _ in range(len(groups) + 1):  # raising one value's cells never lowers another's; few rounds settle
        changed = False
        for idx in groups:
            target = min(ds.golden_min_rows_per_slice, sum(n[i] for i in idx))
            deficit = target - sum(quota[i] for i in idx)
            while deficit > 0:
                spare = {i: n[i] - quota[i] for i in idx if n[i] > quota[i]}
                room = sum(spare.values())
                for i, free in spare.items():
                    add = min(free, deficit, max(1, math.floor(deficit * free / room)))
                    quota[i] += add
                    deficit -= add
                    changed = True
                    if deficit == 0:
                        break
        if not changed:
            break
    return cells.with_columns(pl.Series("quota", quota, dtype=pl.Int64))


def build_golden(
    con: duckdb.DuckDBPyConnection, settings: Settings, *, reason: str, run_id: str, now: datetime
) -> GoldenInfo:
    """Select and freeze a new golden set from the labelled rows now in the warehouse (caller holds
    the writer lock and a transaction). Rows are chosen per slice cell by a stable hash of their key."""
    cols = settings.columns
    label = quote(cols.label)
    slices = [quote(s) for s in cols.slices]
    names = [n for n, _ in raw_delta_columns(settings)]
    key_hash = key_hash_sql(cols.row_id, names)
    part = ", ".join(slices) if slices else "NULL"
    group = ", ".join(slices)
    cells = con.sql(
        f"SELECT {group + ', ' if group else ''}count(*) AS n FROM raw_deltas WHERE {label} IS NOT NULL"
        + (f" GROUP BY {group} ORDER BY {group}" if group else "")
    ).pl()
    if cells.is_empty() or int(cells["n"].sum()) == 0:
        raise DataError("cannot build the golden set: the warehouse has no labelled rows yet")
    quotas = golden_quotas(cells, settings)
    con.register("golden_quota", quotas.to_arrow())
    try:
        join = " AND ".join(f"r.{s} IS NOT DISTINCT FROM q.{s}" for s in slices) or "TRUE"
        select_cols = ", ".join(f"r.{quote(n)}" for n in names)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE golden_pick AS
            SELECT {select_cols}, r._batch_id, r._row_hash FROM (
                SELECT *, row_number() OVER (PARTITION BY {part} ORDER BY {key_hash}, _row_hash) AS _rk
                FROM raw_deltas WHERE {label} IS NOT NULL
            ) r JOIN golden_quota q ON {join}
            WHERE r._rk <= q.quota"""
        )
    finally:
        con.unregister("golden_quota")
    count, total, xor = fetch_one(con, f"SELECT {AGGREGATE_SQL} FROM golden_pick") or (0, 0, 0)
    ghash = data_hash(count, total, xor)
    slice_counts = {
        s: {
            str(k): int(v)
            for k, v in con.execute(
                f"SELECT {quote(s)}, count(*) FROM golden_pick GROUP BY 1 ORDER BY 1"
            ).fetchall()
        }
        for s in cols.slices
    }
    max_batch = int(fetch_value(con, "SELECT coalesce(max(_batch_id), 0) FROM golden_pick") or 0)
    # Every build is a row of golden_versions (the newest is active); the rows of a hash are stored once.
    exists = fetch_value(con, "SELECT count(*) FROM golden_versions WHERE golden_hash = ?", [ghash])
    if not exists:
        con.execute("INSERT INTO golden_rows SELECT *, ? FROM golden_pick", [ghash])
    con.execute(
        "INSERT INTO golden_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            next_id(con, "golden_versions", "build_id"),
            ghash,
            now,
            int(count),
            max_batch,
            json.dumps(slice_counts),
            reason,
            run_id or None,
        ],
    )
    con.execute("DROP TABLE golden_pick")
    return GoldenInfo(ghash, int(count), max_batch, slice_counts, now, reused=bool(exists))


def read_golden(
    con: duckdb.DuckDBPyConnection, settings: Settings, golden_hash: str, *, with_row_hashes: bool = False
) -> pl.DataFrame:
    """The rows of a golden set in canonical order (with their `_row_hash` column when asked)."""
    names = ", ".join(quote(n) for n, _ in raw_delta_columns(settings))
    if with_row_hashes:
        names += ", _row_hash"
    return con.sql(
        f"SELECT {names} FROM golden_rows WHERE _golden_hash = ? ORDER BY {key_order(settings)}",
        params=[golden_hash],
    ).pl()


def ensure_golden(s: Settings, *, rebuild: bool, reason: str, run_id: str) -> tuple[GoldenInfo, bool]:
    """The active golden set: built on first use, rebuilt only on request (with a reason, recorded in
    the ledger with the old and new hashes). Returns it and whether this call built it."""
    if rebuild and not reason.strip():
        raise DataError("rebuilding the golden set needs a reason")
    now = utc_now()
    with writer_keeping_snapshot(s) as con, transaction(con):
        old = active_golden(con)
        if old is not None and not rebuild:
            return old, False
        golden = build_golden(con, s, reason=reason or "first build", run_id=run_id, now=now)
        if old is not None:
            registry.record(
                con,
                action="golden_rebuilt",
                version=None,
                champion_after=registry.champion(con),
                now=now,
                data_hash=golden.golden_hash,
                reason=reason,
                metrics={"old_golden_hash": old.golden_hash, "new_golden_hash": golden.golden_hash},
                run_id=run_id,
            )
    return golden, True
