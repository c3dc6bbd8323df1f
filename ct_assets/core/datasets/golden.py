"""The golden set: representative of the history the training window covers, never trained on.

Golden rows come from the golden reserve only: the rows whose key falls in a stable hash bucket holding
[dataset] golden_fraction of all keys, decided at ingest (store.schema.reserve_sql), which no training
set ever takes. A golden version is the reserve's labelled rows in the current training window (not in
held-back batches, and not equal in content to any row outside the reserve, which a model may have
trained on), sampled down to [dataset] golden_max_rows per period of the window (PERIODS equal spans
of time) and slice cell, with every slice value raised to golden_min_rows_per_slice where the reserve
has them. It is identified by its content hash.

Each CT run refreshes it when the candidate differs from the active version in at least
[dataset] golden_refresh of its rows, or the active one holds rows of a batch held back since (a ledger
row `golden_refreshed` says what changed); with golden_refresh = 0 the set stays frozen (the rows of
held-back batches still leave it). `ct-assets golden rebuild --reason` forces a new version
(`golden_rebuilt`). Champion and challenger are always compared on the same, active version. Versions'
rows are kept (golden_rows), never deleted: older validations and `reproduce` name them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import duckdb
import polars as pl

from ct_assets.common.clock import utc_now
from ct_assets.config.settings import Settings
from ct_assets.core import registry
from ct_assets.core.datasets.keys import key_column, key_order
from ct_assets.core.monitoring.evidence import held_batches
from ct_assets.core.triggers.snapshot import writer_keeping_snapshot
from ct_assets.errors import DataError
from ct_assets.store import labels
from ct_assets.store.evolution import user_columns
from ct_assets.store.hashing import AGGREGATE_SQL, data_hash, key_hash_sql
from ct_assets.store.sql import fetch_one, fetch_value, next_id, quote
from ct_assets.store.warehouse import transaction

PERIODS = 12  # equal spans of the window's time the golden sample is stratified over


@dataclass(frozen=True)
class GoldenInfo:
    golden_hash: str
    rows: int
    max_batch_id: int
    slice_counts: dict[str, dict[str, int]]
    created_at: datetime
    reused: bool = False
    changes: dict[str, Any] = field(default_factory=dict)  # rows added and removed against the version before


def active_golden(con: duckdb.DuckDBPyConnection) -> GoldenInfo | None:
    row = fetch_one(
        con,
        "SELECT golden_hash, rows, max_batch_id, slice_counts, created_at FROM golden_versions "
        "ORDER BY build_id DESC LIMIT 1",
    )
    if row is None:
        return None
    return GoldenInfo(row[0], int(row[1]), int(row[2]), json.loads(row[3] or "{}"), row[4], reused=True)


def golden_quotas(cells: pl.DataFrame, settings: Settings, fraction: float = 1.0) -> pl.DataFrame:
    """How many rows to take from each cell (one combination of period and slice values).

    `fraction` of each cell (all of the reserve by default), scaled down to golden_max_rows, then raised
    so that every value of every slice column gets at least golden_min_rows_per_slice rows (or all it
    has): coverage wins over the cap. A value's deficit is spread over its cells in proportion to their
    spare rows.
    """
    ds = settings.dataset
    n = [int(x) for x in cells["n"].to_list()]
    quota = [min(c, math.ceil(c * fraction)) for c in n]
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
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    *,
    reason: str,
    run_id: str,
    now: datetime,
    excluded_batches: Sequence[int] = (),
) -> GoldenInfo:
    """Select and store a new golden version from the reserve (caller holds the writer lock and a
    transaction). Rows are chosen per cell by a stable hash of their key."""
    _pick(con, settings, excluded_batches)
    try:
        count, total, xor = fetch_one(con, f"SELECT {AGGREGATE_SQL} FROM golden_pick") or (0, 0, 0)
        if not count:
            raise DataError(
                "cannot build the golden set: no labelled rows in the golden reserve of the training window yet "
                "(the reserve holds [dataset] golden_fraction of all row keys; land more labelled rows)"
            )
        ghash = data_hash(count, total, xor)
        return _record_version(con, settings, ghash, int(count), reason=reason, run_id=run_id, now=now)
    finally:
        con.execute("DROP TABLE IF EXISTS golden_pick")


def _pick(con: duckdb.DuckDBPyConnection, settings: Settings, excluded_batches: Sequence[int]) -> None:
    """The temp table golden_pick: the candidate golden rows (see the module docstring)."""
    cols = settings.columns
    et, label = quote(cols.event_time), quote(cols.label)
    names = [n for n, _ in user_columns(con)]
    max_batch = int(
        fetch_value(con, "SELECT coalesce(max(batch_id), 0) FROM ingest_log WHERE status = 'ingested'") or 0
    )
    joined = labels.join_sql(settings, "r", "$max_batch", excluded_batches)
    effective = labels.label_sql(settings, "r")
    newest = fetch_value(
        con,
        f"SELECT max(r.{et}) FROM raw_deltas r{joined} WHERE {effective} IS NOT NULL AND r._batch_id <= $max_batch",
        {"max_batch": max_batch},
    )
    if newest is None:
        raise DataError("cannot build the golden set: the warehouse has no labelled rows yet")
    window_start = newest - timedelta(days=settings.dataset.window_days)
    held = (
        f" AND r._batch_id NOT IN ({', '.join(str(int(b)) for b in excluded_batches)})"
        if excluded_batches
        else ""
    )
    # Labels that arrived after their rows count (store.labels); a golden row's hash covers its label.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE golden_eligible AS
        SELECT r.* REPLACE ({effective} AS {label}, {labels.hash_sql(settings, "r")} AS _row_hash)
        FROM raw_deltas r{joined} ANTI JOIN (SELECT DISTINCT _content_hash FROM raw_deltas
            WHERE NOT _reserve AND _batch_id <= $max_batch) t ON r._content_hash = t._content_hash
        WHERE r._reserve AND {effective} IS NOT NULL AND r.{et} >= $window_start AND r._batch_id <= $max_batch{held}""",
        {"max_batch": max_batch, "window_start": window_start},
    )
    span = fetch_one(con, f"SELECT min(epoch({et})), max(epoch({et})) FROM golden_eligible")
    lo, hi = (float(span[0]), float(span[1])) if span and span[0] is not None else (0.0, 0.0)
    width = max(hi - lo, 1e-9) / PERIODS
    period = f"least({PERIODS - 1}, CAST(floor((epoch({et}) - {lo!r}) / {width!r}) AS BIGINT))"
    parts = ["_period", *(quote(s) for s in cols.slices)]
    group = ", ".join(parts)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE golden_cells AS SELECT *, {period} AS _period FROM golden_eligible"
    )
    cells = con.sql(f"SELECT {group}, count(*) AS n FROM golden_cells GROUP BY {group} ORDER BY {group}").pl()
    quotas = golden_quotas(cells, settings) if cells.height else cells.with_columns(pl.lit(0).alias("quota"))
    con.register("golden_quota", quotas.to_arrow())
    try:
        join = " AND ".join(f"r.{c} IS NOT DISTINCT FROM q.{c}" for c in parts)
        select_cols = ", ".join(f"r.{quote(n)}" for n in names)
        key_hash = key_hash_sql(cols.row_id, names)
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE golden_pick AS
            SELECT {select_cols}, r._batch_id, r._row_hash FROM (
                SELECT *, row_number() OVER (PARTITION BY {group} ORDER BY {key_hash}, _row_hash) AS _rk
                FROM golden_cells
            ) r JOIN golden_quota q ON {join}
            WHERE r._rk <= q.quota"""
        )
    finally:
        con.unregister("golden_quota")
        con.execute("DROP TABLE IF EXISTS golden_cells")
        con.execute("DROP TABLE IF EXISTS golden_eligible")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE golden_window AS SELECT CAST(? AS TIMESTAMP) AS t", [window_start]
    )


def _record_version(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    ghash: str,
    count: int,
    *,
    reason: str,
    run_id: str,
    now: datetime,
) -> GoldenInfo:
    """Store golden_pick as version `ghash` (its rows once per hash) and make it the active one."""
    slice_counts = {
        s: {
            str(k): int(v)
            for k, v in con.execute(
                f"SELECT {quote(s)}, count(*) FROM golden_pick GROUP BY 1 ORDER BY 1"
            ).fetchall()
        }
        for s in settings.columns.slices
    }
    max_batch = int(fetch_value(con, "SELECT coalesce(max(_batch_id), 0) FROM golden_pick") or 0)
    changes = _changes(con, settings)
    window_start = fetch_value(con, "SELECT t FROM golden_window")
    exists = fetch_value(con, "SELECT count(*) FROM golden_versions WHERE golden_hash = ?", [ghash])
    if not exists:
        con.execute("INSERT INTO golden_rows BY NAME SELECT *, ? AS _golden_hash FROM golden_pick", [ghash])
    con.execute(
        "INSERT INTO golden_versions (build_id, golden_hash, created_at, rows, max_batch_id, slice_counts, reason, "
        "run_id, window_start, changes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            next_id(con, "golden_versions", "build_id"),
            ghash,
            now,
            count,
            max_batch,
            json.dumps(slice_counts),
            reason,
            run_id or None,
            window_start,
            json.dumps(changes),
        ],
    )
    return GoldenInfo(ghash, count, max_batch, slice_counts, now, reused=bool(exists), changes=changes)


def _changes(con: duckdb.DuckDBPyConnection, settings: Settings) -> dict[str, Any]:
    """Rows of golden_pick added against the active version, rows of the active version removed, and how
    many of those removed lie in batches held back since (compared by key)."""
    active = active_golden(con)
    if active is None:
        n = int(fetch_value(con, "SELECT count(*) FROM golden_pick") or 0)
        return {"previous": None, "rows_added": n, "rows_removed": 0}
    key = key_column(settings)
    row = fetch_one(
        con,
        f"""SELECT (SELECT count(*) FROM golden_pick p ANTI JOIN (SELECT {key} FROM golden_rows WHERE _golden_hash = $g) a
                    ON p.{key} = a.{key}),
                   (SELECT count(*) FROM (SELECT {key} FROM golden_rows WHERE _golden_hash = $g) a
                    ANTI JOIN golden_pick p ON p.{key} = a.{key})""",
        {"g": active.golden_hash},
    )
    added, removed = (int(row[0]), int(row[1])) if row else (0, 0)
    return {"previous": active.golden_hash, "rows_added": added, "rows_removed": removed}


def read_golden(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    golden_hash: str,
    *,
    with_row_hashes: bool = False,
    with_batch_ids: bool = False,
) -> pl.DataFrame:
    """The rows of a golden set in canonical order, every stored user column (with their `_row_hash`
    and `_batch_id` columns when asked)."""
    names = ", ".join(quote(n) for n, _ in user_columns(con, "golden_rows"))
    if with_row_hashes:
        names += ", _row_hash"
    if with_batch_ids:
        names += ", _batch_id"
    return con.sql(
        f"SELECT {names} FROM golden_rows WHERE _golden_hash = ? ORDER BY {key_order(settings)}",
        params=[golden_hash],
    ).pl()


def ensure_golden(s: Settings, *, rebuild: bool, reason: str, run_id: str) -> tuple[GoldenInfo, bool]:
    """The golden version to compare on now: the active one, or a new one from the reserve when there is
    none, when the reserve moved by [dataset] golden_refresh of its rows (or the active one holds rows of
    a batch held back since), or on request (`rebuild`, with a reason). A new version that replaces
    another gets a ledger row saying what changed. Returns the version and whether it is new."""
    if rebuild and not reason.strip():
        raise DataError("rebuilding the golden set needs a reason")
    now = utc_now()
    with writer_keeping_snapshot(s) as con, transaction(con):
        old = active_golden(con)
        excluded_batches = held_batches(con)
        _pick(con, s, excluded_batches)
        try:
            count, total, xor = fetch_one(con, f"SELECT {AGGREGATE_SQL} FROM golden_pick") or (0, 0, 0)
            if (
                old is not None
                and not rebuild
                and not _material_change(con, s, old, int(count), excluded_batches)
            ):
                return old, False
            if not count:
                if old is not None:
                    return old, False
                raise DataError(
                    "cannot build the golden set: no labelled rows in the golden reserve of the training window "
                    "yet (the reserve holds [dataset] golden_fraction of all row keys; land more labelled rows)"
                )
            why = reason or ("first build" if old is None else "refreshed: the reserve moved")
            golden = _record_version(
                con, s, data_hash(count, total, xor), int(count), reason=why, run_id=run_id, now=now
            )
        finally:
            con.execute("DROP TABLE IF EXISTS golden_pick")
        if old is not None:
            registry.record(
                con,
                action="golden_rebuilt" if rebuild else "golden_refreshed",
                version=None,
                champion_after=registry.champion(con),
                now=now,
                data_hash=golden.golden_hash,
                reason=why,
                metrics={
                    "old_golden_hash": old.golden_hash,
                    "new_golden_hash": golden.golden_hash,
                    **golden.changes,
                },
                run_id=run_id,
            )
    return golden, True


def _material_change(
    con: duckdb.DuckDBPyConnection, s: Settings, old: GoldenInfo, count: int, excluded_batches: Sequence[int]
) -> bool:
    """Whether golden_pick differs from the active version enough to become the new one."""
    changes = _changes(con, s)
    changed = changes["rows_added"] + changes["rows_removed"]
    if excluded_batches:
        held = ", ".join(str(int(b)) for b in excluded_batches)
        stale = fetch_value(
            con,
            f"SELECT count(*) FROM golden_rows WHERE _golden_hash = ? AND _batch_id IN ({held})",
            [old.golden_hash],
        )
        if stale:
            return True
    share = s.dataset.golden_refresh
    return share > 0 and changed >= share * max(count, 1)
