"""The golden set (frozen, stratified, never trained on) and the training data set (a recorded selection).

A training data set is not a copy: `raw_deltas` is append-only, so a selection recorded as (newest
batch, window start, holdout boundary, golden version) names the same rows forever. Its content hash
(count, sum and XOR of the rows' hashes, for train and holdout) is its version. Rows are always read
in one canonical total order (event time, then row id or row hash), because LightGBM can train a
different model on the same rows in another order.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import duckdb
import numpy as np
import polars as pl

from ct_assets.config import Settings
from ct_assets.errors import DataError
from ct_assets.lib.hashing import AGGREGATE_SQL, combine, data_hash, key_hash_sql, row_hash_sql
from ct_assets.lib.warehouse import fetch_one, fetch_value, next_id, quote, raw_delta_columns


@dataclass(frozen=True)
class GoldenInfo:
    golden_hash: str
    rows: int
    max_batch_id: int
    slice_counts: dict[str, dict[str, int]]
    created_at: datetime
    reused: bool = False


@dataclass(frozen=True)
class DatasetInfo:
    dataset_hash: str
    max_batch_id: int
    window_start: datetime
    newest_event_time: datetime
    holdout_start_time: datetime
    golden_hash: str
    n_train: int
    n_holdout: int
    train_hash: str
    holdout_hash: str
    rows_unlabelled: int

    def to_json(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict) -> DatasetInfo:
        out = dict(data)
        for k in ("window_start", "newest_event_time", "holdout_start_time"):
            out[k] = datetime.fromisoformat(out[k])
        return cls(**out)


def _key_order(settings: Settings, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    key = quote(settings.columns.row_id) if settings.columns.row_id else "_row_hash"
    return f"{prefix}{quote(settings.columns.event_time)}, {prefix}{key}"


def _key_column(settings: Settings) -> str:
    return quote(settings.columns.row_id) if settings.columns.row_id else "_row_hash"


# ---------------------------------------------------------------------------------------------- golden


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
        f"SELECT {names} FROM golden_rows WHERE _golden_hash = ? ORDER BY {_key_order(settings)}",
        params=[golden_hash],
    ).pl()


# ------------------------------------------------------------------------------------------- training


def define_training_dataset(
    con: duckdb.DuckDBPyConnection, settings: Settings, golden_hash: str
) -> DatasetInfo:
    """Record the current training window (labelled, golden rows excluded) and its time-ordered split."""
    cols = settings.columns
    et, label = quote(cols.event_time), quote(cols.label)
    max_batch = int(
        fetch_value(con, "SELECT coalesce(max(batch_id), 0) FROM ingest_log WHERE status = 'ingested'") or 0
    )
    newest = fetch_value(
        con, f"SELECT max({et}) FROM raw_deltas WHERE _batch_id <= ? AND {label} IS NOT NULL", [max_batch]
    )
    if newest is None:
        raise DataError("no labelled rows in the warehouse yet: nothing to train on")
    window_start = newest - timedelta(days=settings.dataset.window_days)
    base = _selection_sql(settings)
    params = {"max_batch": max_batch, "window_start": window_start, "golden": golden_hash}
    n = int(fetch_value(con, f"SELECT count(*) FROM ({base})", params) or 0)
    n_holdout = max(1, round(n * settings.dataset.holdout_fraction))
    if n - n_holdout < settings.dataset.min_train_rows:
        raise DataError(
            f"only {n} labelled non-golden rows in the training window ({n - n_holdout} for training); "
            f"[dataset] min_train_rows is {settings.dataset.min_train_rows}"
        )
    # The holdout starts at the event time below which the oldest (1 - fraction) of rows lie; rows
    # sharing that timestamp all go to the holdout, so the split is by time, never within an instant.
    # That is the event time of the n_holdout-th newest row: counted from the newest end, DuckDB keeps
    # a top-N heap of n_holdout rows rather than sorting the whole window.
    boundary = fetch_value(
        con,
        f"SELECT {et} FROM ({base}) ORDER BY {et} DESC LIMIT 1 OFFSET $offset",
        {**params, "offset": n_holdout - 1},
    )
    agg = fetch_one(
        con,
        f"SELECT {_aggregate(f'{et} < $boundary')}, {_aggregate(f'{et} >= $boundary')} FROM ({base})",
        {**params, "boundary": boundary},
    )
    assert agg is not None
    n_train, train_hash = int(agg[0]), data_hash(*agg[0:3])
    n_hold, holdout_hash = int(agg[3]), data_hash(*agg[3:6])
    if n_train < settings.dataset.min_train_rows or n_hold == 0:
        raise DataError(f"the time-ordered split leaves {n_train} training and {n_hold} holdout rows")
    unlabelled = int(
        fetch_value(
            con, f"SELECT count(*) FROM raw_deltas WHERE _batch_id <= ? AND {label} IS NULL", [max_batch]
        )
        or 0
    )
    return DatasetInfo(
        dataset_hash=combine(train=train_hash, holdout=holdout_hash, golden=golden_hash),
        max_batch_id=max_batch,
        window_start=window_start,
        newest_event_time=newest,
        holdout_start_time=boundary,
        golden_hash=golden_hash,
        n_train=n_train,
        n_holdout=n_hold,
        train_hash=train_hash,
        holdout_hash=holdout_hash,
        rows_unlabelled=unlabelled,
    )


def _selection_sql(settings: Settings) -> str:
    """Rows of a training window; named parameters $max_batch, $window_start, $golden."""
    cols = settings.columns
    et, label, key = quote(cols.event_time), quote(cols.label), _key_column(settings)
    # An anti join (rows whose key is not a golden key), not NOT EXISTS: DuckDB decorrelates that into a
    # delim join that materializes and groups every row of the window, ~8x slower here.
    return (
        f"SELECT d.* FROM raw_deltas d ANTI JOIN (SELECT {key} FROM golden_rows WHERE _golden_hash = $golden) g "
        f"ON d.{key} = g.{key} "
        f"WHERE d._batch_id <= $max_batch AND d.{label} IS NOT NULL AND d.{et} >= $window_start"
    )


def _aggregate(where: str) -> str:
    """AGGREGATE_SQL over the rows matching `where`."""
    return (
        f"count(*) FILTER (WHERE {where}), coalesce(sum(_row_hash) FILTER (WHERE {where}), 0), "
        f"coalesce(bit_xor(_row_hash) FILTER (WHERE {where}), 0)"
    )


def record_dataset(con: duckdb.DuckDBPyConnection, ds: DatasetInfo, *, run_id: str, now: datetime) -> bool:
    """Store the selection (once per content hash). Returns True when it was new."""
    exists = fetch_value(
        con, "SELECT count(*) FROM dataset_versions WHERE dataset_hash = ?", [ds.dataset_hash]
    )
    if exists:
        return False
    con.execute(
        "INSERT INTO dataset_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ds.dataset_hash,
            now,
            ds.max_batch_id,
            ds.window_start,
            ds.newest_event_time,
            ds.golden_hash,
            ds.n_train,
            ds.n_holdout,
            ds.train_hash,
            ds.holdout_hash,
            ds.holdout_start_time,
            ds.rows_unlabelled,
            run_id or None,
        ],
    )
    return True


def load_dataset(con: duckdb.DuckDBPyConnection, dataset_hash: str) -> DatasetInfo:
    row = fetch_one(
        con,
        "SELECT dataset_hash, max_batch_id, window_start, newest_event_time, holdout_start_time, golden_hash, "
        "n_train, n_holdout, train_hash, holdout_hash, rows_unlabelled FROM dataset_versions WHERE dataset_hash = ?",
        [dataset_hash],
    )
    if row is None:
        raise DataError(f"no training data set {dataset_hash} in the warehouse")
    return DatasetInfo(
        dataset_hash=row[0],
        max_batch_id=int(row[1]),
        window_start=row[2],
        newest_event_time=row[3],
        holdout_start_time=row[4],
        golden_hash=row[5],
        n_train=int(row[6]),
        n_holdout=int(row[7]),
        train_hash=row[8],
        holdout_hash=row[9],
        rows_unlabelled=int(row[10]),
    )


def frame_hash(row_hashes: np.ndarray) -> str:
    """data_hash of a column of 64-bit row hashes (numpy sums wrap modulo 2**64, as the hash wants)."""
    h = row_hashes.astype(np.uint64, copy=False)
    total = int(h.sum(dtype=np.uint64)) if len(h) else 0
    xor = int(np.bitwise_xor.reduce(h)) if len(h) else 0
    return data_hash(len(h), total, xor)


def read_split(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    ds: DatasetInfo,
    part: str,
    *,
    recompute_hashes: bool = False,
    with_row_hashes: bool = False,
) -> pl.DataFrame:
    """The train or holdout rows of a recorded data set, in canonical order, as polars (via Arrow)
    (with their `_row_hash` column when asked).

    The rows read are hashed and compared with the hash recorded for that part, so a data set whose
    rows changed is refused rather than silently used. By default the stored per-row hashes are summed
    (nearly free); `recompute_hashes` hashes every value again (what `reproduce` does, to catch rows
    edited in place).
    """
    if part not in ("train", "holdout"):
        raise ValueError(part)
    et = quote(settings.columns.event_time)
    columns = [n for n, _ in raw_delta_columns(settings)]
    names = ", ".join(quote(n) for n in columns)
    hash_expr = row_hash_sql(columns) if recompute_hashes else "_row_hash"
    cmp = "<" if part == "train" else ">="
    sql = (
        f"SELECT {names}, {hash_expr} AS _row_hash FROM ({_selection_sql(settings)}) WHERE {et} {cmp} $boundary "
        f"ORDER BY {_key_order(settings)}"
    )
    frame = con.sql(
        sql,
        params={
            "max_batch": ds.max_batch_id,
            "window_start": ds.window_start,
            "golden": ds.golden_hash,
            "boundary": ds.holdout_start_time,
        },
    ).pl()
    expected_rows, expected_hash = (
        (ds.n_train, ds.train_hash) if part == "train" else (ds.n_holdout, ds.holdout_hash)
    )
    got = frame_hash(frame["_row_hash"].to_numpy())
    if frame.height != expected_rows or got != expected_hash:
        raise DataError(
            f"data set {ds.dataset_hash}: the {part} rows read ({frame.height} rows, hash {got}) differ from the "
            f"recorded ones ({expected_rows} rows, hash {expected_hash}): the warehouse rows behind it changed"
        )
    return frame if with_row_hashes else frame.drop("_row_hash")


@dataclass(frozen=True)
class GoldenOverlap:
    """Golden rows found in a training data set: by key, and by content (the same values under another id)."""

    by_key: int
    by_content: int
    examples: list[str]


def golden_overlap(con: duckdb.DuckDBPyConnection, settings: Settings, ds: DatasetInfo) -> GoldenOverlap:
    """Count the training data set's rows (train and holdout, as training reads them) that are golden rows:
    the same key, or the same values in every column but the row id (a golden row landed again under a
    new id would otherwise leak into training)."""
    cols = settings.columns
    key = _key_column(settings)
    content = [quote(n) for n, _ in raw_delta_columns(settings) if n != cols.row_id]

    def content_hash(alias: str) -> str:  # DuckDB's fast hash: only compared within this one query
        return "hash(" + ", ".join(f"{alias}.{c}" for c in content) + ")"

    et = quote(cols.event_time)
    params = {"max_batch": ds.max_batch_id, "window_start": ds.window_start, "golden": ds.golden_hash}
    # Equal content means an equal event time, so only rows at a golden row's event time are hashed.
    # Each count is its own query: a CTE used twice in one query is materialized, all its columns.
    matches = f"""WITH sel AS ({_selection_sql(settings)}),
                       g AS (SELECT * FROM golden_rows WHERE _golden_hash = $golden),
                       gh AS (SELECT DISTINCT g.{et} AS t, {content_hash("g")} AS h FROM g),
                       cand AS (SELECT sel.* FROM sel SEMI JOIN (SELECT DISTINCT t FROM gh) ge ON sel.{et} = ge.t)"""
    by_key = fetch_value(con, f"{matches} SELECT count(*) FROM sel JOIN g ON sel.{key} = g.{key}", params)
    by_content = fetch_value(
        con,
        f"{matches} SELECT count(*) FROM cand JOIN gh ON cand.{et} = gh.t AND {content_hash('cand')} = gh.h",
        params,
    )
    row = (int(by_key or 0), int(by_content or 0))
    examples: list[str] = []
    if row[0] or row[1]:
        examples = [
            str(r[0])
            for r in con.execute(
                f"""{matches}
                SELECT sel.{key} FROM sel WHERE sel.{key} IN (SELECT {key} FROM g)
                   OR {content_hash("sel")} IN (SELECT h FROM gh) LIMIT 5""",
                params,
            ).fetchall()
        ]
    return GoldenOverlap(int(row[0]), int(row[1]), examples)


def exploration_share(con: duckdb.DuckDBPyConnection, settings: Settings, ds: DatasetInfo) -> float | None:
    """Share of the training split's rows flagged as exploration (None when no flag column is configured)."""
    flag = settings.columns.exploration
    if not flag:
        return None
    et = quote(settings.columns.event_time)
    value = fetch_value(
        con,
        f"SELECT avg(CAST({quote(flag)} AS DOUBLE)) FROM ({_selection_sql(settings)}) WHERE {et} < $boundary",
        {
            "max_batch": ds.max_batch_id,
            "window_start": ds.window_start,
            "golden": ds.golden_hash,
            "boundary": ds.holdout_start_time,
        },
    )
    return float(value or 0.0)
