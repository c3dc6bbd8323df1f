"""A data set's train rows in shares, one per worker: consecutive ranges of the canonical order (event
time, then row id or row hash), cut where the key changes, so that the shares read one after another are
exactly the rows, in the order, that `read_split` gives, and no one process has to hold them all.

What `[training] engine = "dask"` reads on a DuckLake warehouse: the step plans the shares (a sample of
the key columns, then one count), each worker reads its own (core.modeling.dask_shares).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import polars as pl

from ct_assets.config import Settings
from ct_assets.core.datasets.keys import key_column, key_order
from ct_assets.core.datasets.training import DatasetInfo, split_sql, stored_columns
from ct_assets.store.sql import quote

PLAN_SAMPLE_ROWS = 100_000  # keys sampled to place the cuts (the step's memory for planning is bounded by it)


@dataclass(frozen=True)
class ShareRange:
    """Rows [start, next share's start) of the canonical order, named by their keys."""

    start: int  # the position of its first row in the canonical order
    lo: tuple[Any, Any] | None  # (event time, key) of its first row; None: from the first row
    hi: tuple[Any, Any] | None  # (event time, key) of the next share's first row; None: to the last row


def plan_shares(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    ds: DatasetInfo,
    parts: int,
    sample_rows: int = PLAN_SAMPLE_ROWS,
) -> list[ShareRange]:
    """`parts` shares of the train rows, even in size: exactly (sizes differ by one at most) up to
    `sample_rows` train rows; beyond, cut at the keys of a reservoir sample of that many rows, so that
    the step never holds or sorts every key (each share within about 1/sqrt(sample_rows) of even).
    Either way a cut falls on a key's first row (rows of one key never straddle two shares; cuts that
    meet merge), and each share's start is an exact count of the rows before its key."""
    n = ds.n_train
    parts = max(1, min(parts, n))
    if parts == 1:
        return [ShareRange(0, None, None)]
    et, key = quote(settings.columns.event_time), key_column(settings)
    query, params = split_sql(con, settings, ds, "train", f"{et} AS _t, {key} AS _k")
    sample = sorted(
        con.execute(
            f"SELECT _t, _k FROM ({query}) USING SAMPLE reservoir({int(sample_rows)} ROWS) REPEATABLE (1)",
            params,
        ).fetchall()
    )
    if not sample:
        return [ShareRange(0, None, None)]
    candidates = list(dict.fromkeys(sample[len(sample) * i // parts] for i in range(1, parts)))
    before = ", ".join(
        f"count(*) FILTER (WHERE _t < $t{i} OR (_t = $t{i} AND _k < $k{i}))" for i in range(len(candidates))
    )
    for i, (t, k) in enumerate(candidates):
        params.update({f"t{i}": t, f"k{i}": k})
    counts = con.execute(f"SELECT {before} FROM ({query})", params).fetchone() or ()
    cuts: dict[int, tuple[Any, Any]] = {}
    for first, cut in zip(counts, candidates, strict=True):
        if first > 0:
            cuts.setdefault(int(first), cut)
    starts = [0, *sorted(cuts)]
    keys: list[tuple[Any, Any] | None] = [None, *(cuts[s] for s in starts[1:])]
    return [ShareRange(s, keys[i], keys[i + 1] if i + 1 < len(keys) else None) for i, s in enumerate(starts)]


def read_share(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    ds: DatasetInfo,
    share: ShareRange,
    *,
    columns: list[str] | None = None,
    recompute_hashes: bool = False,
) -> pl.DataFrame:
    """The rows of one share, in canonical order, with every stored user column (or only `columns`),
    `_row_hash` and `_batch_id` (as read_split, which checks the hash; a share's hash is checked summed
    with the others')."""
    et, key = quote(settings.columns.event_time), key_column(settings)
    select = stored_columns(con)
    if columns is not None:  # and the canonical order's key columns, which the range and the order use
        order = [settings.columns.event_time, *([settings.columns.row_id] if settings.columns.row_id else [])]
        select = ", ".join([*map(quote, dict.fromkeys([*order, *columns])), "_row_hash", "_batch_id"])
    query, params = split_sql(con, settings, ds, "train", select, recompute_hashes=recompute_hashes)
    where = []
    if share.lo is not None:
        where.append(f"({et} > $lo_t OR ({et} = $lo_t AND {key} >= $lo_k))")
        params.update(lo_t=share.lo[0], lo_k=share.lo[1])
    if share.hi is not None:
        where.append(f"({et} < $hi_t OR ({et} = $hi_t AND {key} < $hi_k))")
        params.update(hi_t=share.hi[0], hi_k=share.hi[1])
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    return con.sql(f"SELECT * FROM ({query}){condition} ORDER BY {key_order(settings)}", params=params).pl()


def train_categories(
    con: duckdb.DuckDBPyConnection, settings: Settings, ds: DatasetInfo
) -> Callable[[str], list[Any]]:
    """The distinct non-null values of a column over the train rows, sorted (a categorical feature's
    categories when the config lists none: model.feature_spec)."""

    def of(name: str) -> list[Any]:
        query, params = split_sql(con, settings, ds, "train", f"DISTINCT {quote(name)} AS v")
        return sorted(
            v for (v,) in con.execute(f"SELECT v FROM ({query}) WHERE v IS NOT NULL", params).fetchall()
        )

    return of
