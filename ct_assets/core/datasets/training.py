"""The training data set: a recorded selection over the append-only warehouse.

A training data set is not a copy: `raw_deltas` is append-only, so a selection recorded as (newest
batch, window start, holdout boundary, held-back batches, selection rule) names the same rows forever.
Its content hash (count, sum and XOR of the rows' hashes, for train and holdout) is its version. Rows
are always read in one canonical total order (event time, then row id or row hash), because LightGBM
can train a different model on the same rows in another order.

What the selection leaves out (selection rule 2, schema 4 on): rows in the golden reserve (a stable
hash bucket of the row key, decided at ingest: golden sets are sampled from it, so no model ever trains
on a row a golden set may hold), rows equal in content (event time and features) to a reserve row under
another id, and the batches held back as suspect or excluded (core.monitoring.evidence). Rule 1 is
the selection of data sets recorded before: every labelled row of the window but the golden set's keys.

Rule 3 (schema 5 on) is rule 2 over effective labels: a row's own label, else the label attached to it
later by a batch up to the data set's newest batch (store.labels), so that the labels a model saw are
named by its data set forever, whatever arrives afterwards; a late-labelled row's hash covers its label.
Data sets recorded under rules 1 and 2 read exactly as before, with their hashes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import duckdb
import numpy as np
import polars as pl

from ct_assets.config import Settings
from ct_assets.core.datasets.keys import key_column, key_order
from ct_assets.errors import DataError
from ct_assets.store import labels
from ct_assets.store.evolution import batch_hash_sql, user_columns
from ct_assets.store.hashing import combine, data_hash
from ct_assets.store.sql import fetch_one, fetch_value, quote

SELECTION_GOLDEN_KEYS = 1  # data sets recorded before schema 4
SELECTION_RESERVE = 2  # data sets recorded under schema 4
SELECTION_LATE_LABELS = 3


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
    selection: int = SELECTION_GOLDEN_KEYS  # the rule that names its rows (see the module docstring)
    excluded_batches: tuple[int, ...] = ()  # batches held back or excluded when it was defined
    rows_reserved: int = 0  # labelled rows of the window left out: in the golden reserve
    rows_same_content: int = 0  # ... equal in content to a reserve row under another id
    rows_held_back: int = 0  # ... in held-back or excluded batches
    rows_late_labelled: int = 0  # rows (train and holdout) whose label arrived after the row (rule 3)

    def to_json(self) -> dict:
        out = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}
        out["excluded_batches"] = list(self.excluded_batches)
        return out

    @classmethod
    def from_json(cls, data: dict) -> DatasetInfo:
        out = dict(data)
        for k in ("window_start", "newest_event_time", "holdout_start_time"):
            out[k] = datetime.fromisoformat(out[k])
        out["excluded_batches"] = tuple(out.get("excluded_batches") or ())
        return cls(**out)

    def params(self) -> dict:
        """The selection's SQL parameters."""
        return selection_params(self.selection, self.max_batch_id, self.window_start, self.golden_hash)


def define_training_dataset(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    golden_hash: str,
    excluded_batches: Sequence[int] = (),
) -> DatasetInfo:
    """The current training window (labelled rows, minus the reserve, rows equal in content to a reserve
    row, and `excluded_batches`) and its time-ordered split into train and a recent holdout."""
    et = quote(settings.columns.event_time)
    max_batch = int(
        fetch_value(con, "SELECT coalesce(max(batch_id), 0) FROM ingest_log WHERE status = 'ingested'") or 0
    )
    excluded = tuple(sorted({int(b) for b in excluded_batches}))
    newest = fetch_value(
        con,
        f"SELECT max(d.{et}) FROM raw_deltas d{labels.join_sql(settings, 'd', '$max_batch', excluded)} "
        f"WHERE d._batch_id <= $max_batch AND {labels.label_sql(settings)} IS NOT NULL",
        {"max_batch": max_batch},
    )
    if newest is None:
        raise DataError("no labelled rows in the warehouse yet: nothing to train on")
    window_start = newest - timedelta(days=settings.dataset.window_days)
    base = selection_sql(settings, SELECTION_LATE_LABELS, excluded)
    params = selection_params(SELECTION_LATE_LABELS, max_batch, window_start, golden_hash)
    n = int(fetch_value(con, f"SELECT count(*) FROM ({base})", params) or 0)
    n_holdout = max(1, round(n * settings.dataset.holdout_fraction))
    if n - n_holdout < settings.dataset.min_train_rows:
        raise DataError(
            f"only {n} labelled rows outside the golden reserve in the training window ({n - n_holdout} for "
            f"training); [dataset] min_train_rows is {settings.dataset.min_train_rows}"
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
        f"SELECT {_aggregate(f'{et} < $boundary')}, {_aggregate(f'{et} >= $boundary')}, "
        f"count(*) FILTER (WHERE _late) FROM ({base})",
        {**params, "boundary": boundary},
    )
    assert agg is not None
    n_train, train_hash = int(agg[0]), data_hash(*agg[0:3])
    n_hold, holdout_hash = int(agg[3]), data_hash(*agg[3:6])
    if n_train < settings.dataset.min_train_rows or n_hold == 0:
        raise DataError(f"the time-ordered split leaves {n_train} training and {n_hold} holdout rows")
    left_out = _left_out(con, settings, max_batch, window_start, excluded)
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
        rows_unlabelled=left_out[0],
        selection=SELECTION_LATE_LABELS,
        excluded_batches=excluded,
        rows_reserved=left_out[1],
        rows_same_content=left_out[2],
        rows_held_back=left_out[3],
        rows_late_labelled=int(agg[6] or 0),
    )


def _left_out(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    max_batch: int,
    window_start: datetime,
    excluded: tuple[int, ...],
) -> tuple[int, int, int, int]:
    """Rows of the window not trained on, by reason: unlabelled (any time), golden reserve, equal in
    content to a reserve row, in a held-back batch (each labelled row counted under the first that applies)."""
    et, label = quote(settings.columns.event_time), "_label"
    held = _batch_list(excluded)
    row = fetch_one(
        con,
        f"""WITH r AS (SELECT DISTINCT _content_hash FROM raw_deltas WHERE _reserve AND _batch_id <= $max_batch),
        x AS (SELECT d.{et}, d._reserve, d._content_hash, d._batch_id, {labels.label_sql(settings)} AS _label
              FROM raw_deltas d{labels.join_sql(settings, "d", "$max_batch", excluded)}
              WHERE d._batch_id <= $max_batch)
        SELECT count(*) FILTER (WHERE {label} IS NULL),
               count(*) FILTER (WHERE {label} IS NOT NULL AND {et} >= $window_start AND _reserve),
               count(*) FILTER (WHERE {label} IS NOT NULL AND {et} >= $window_start AND NOT _reserve
                                AND _content_hash IN (SELECT _content_hash FROM r)),
               count(*) FILTER (WHERE {label} IS NOT NULL AND {et} >= $window_start AND NOT _reserve
                                AND _content_hash NOT IN (SELECT _content_hash FROM r) AND _batch_id IN {held})
        FROM x""",
        {"max_batch": max_batch, "window_start": window_start},
    )
    assert row is not None
    return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0), int(row[3] or 0)


def _batch_list(batches: Sequence[int]) -> str:
    """A SQL list of batch ids (integers only), never empty."""
    return "(" + ", ".join(str(int(b)) for b in batches) + ")" if batches else "(NULL)"


def selection_params(selection: int, max_batch: int, window_start: datetime, golden_hash: str) -> dict:
    params: dict = {"max_batch": max_batch, "window_start": window_start}
    if selection == SELECTION_GOLDEN_KEYS:
        params["golden"] = golden_hash
    return params


def selection_sql(
    settings: Settings,
    selection: int = SELECTION_LATE_LABELS,
    excluded_batches: Sequence[int] = (),
    *,
    row_hash: str | None = None,
) -> str:
    """Rows of a training window under selection rule `selection`, every stored column (the label the
    effective one under rule 3, with `_late`: it arrived after the row); named parameters $max_batch
    and $window_start (and $golden for rule 1). `row_hash` replaces the stored _row_hash (an expression
    over the alias `d`: the hash recomputed from the values)."""
    cols = settings.columns
    et, label, key = quote(cols.event_time), quote(cols.label), key_column(settings)
    stored_hash = row_hash or "d._row_hash"
    if selection == SELECTION_LATE_LABELS:
        effective = labels.label_sql(settings)
        head = (
            f"SELECT d.* REPLACE ({effective} AS {label}, {labels.hash_sql(settings, 'd', stored_hash)} AS "
            f"_row_hash), {labels.late_label_sql(settings)} IS NOT NULL AS _late "
            f"FROM raw_deltas d{labels.join_sql(settings, 'd', '$max_batch', excluded_batches)}"
        )
    else:
        effective = f"d.{label}"
        head = f"SELECT d.* REPLACE ({stored_hash} AS _row_hash) FROM raw_deltas d"
    window = f"d._batch_id <= $max_batch AND {effective} IS NOT NULL AND d.{et} >= $window_start"
    # Anti joins, not NOT EXISTS: DuckDB decorrelates that into a delim join that materializes and
    # groups every row of the window, ~8x slower here.
    if selection == SELECTION_GOLDEN_KEYS:
        return (
            f"{head} ANTI JOIN (SELECT {key} FROM golden_rows WHERE _golden_hash = $golden) g "
            f"ON d.{key} = g.{key} WHERE {window}"
        )
    held = f" AND d._batch_id NOT IN {_batch_list(excluded_batches)}" if excluded_batches else ""
    return (
        f"{head} ANTI JOIN (SELECT DISTINCT _content_hash FROM raw_deltas "
        "WHERE _reserve AND _batch_id <= $max_batch) r ON d._content_hash = r._content_hash "
        f"WHERE {window} AND NOT d._reserve{held}"
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
        "INSERT INTO dataset_versions (dataset_hash, created_at, max_batch_id, window_start, newest_event_time, "
        "golden_hash, n_train, n_holdout, train_hash, holdout_hash, holdout_start_time, rows_unlabelled, run_id, "
        "selection, excluded_batches, rows_reserved, rows_same_content, rows_held_back, rows_late_labelled) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            ds.selection,
            json.dumps(list(ds.excluded_batches)),
            ds.rows_reserved,
            ds.rows_same_content,
            ds.rows_held_back,
            ds.rows_late_labelled,
        ],
    )
    return True


def load_dataset(con: duckdb.DuckDBPyConnection, dataset_hash: str) -> DatasetInfo:
    row = fetch_one(
        con,
        "SELECT dataset_hash, max_batch_id, window_start, newest_event_time, holdout_start_time, golden_hash, "
        "n_train, n_holdout, train_hash, holdout_hash, rows_unlabelled, coalesce(selection, 1), excluded_batches, "
        "rows_reserved, rows_same_content, rows_held_back, rows_late_labelled FROM dataset_versions "
        "WHERE dataset_hash = ?",
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
        selection=int(row[11]),
        excluded_batches=tuple(json.loads(row[12] or "[]")),
        rows_reserved=int(row[13] or 0),
        rows_same_content=int(row[14] or 0),
        rows_held_back=int(row[15] or 0),
        rows_late_labelled=int(row[16] or 0),
    )


def frame_hash(row_hashes: np.ndarray) -> str:
    """data_hash of a column of 64-bit row hashes (numpy sums wrap modulo 2**64, as the hash wants)."""
    h = row_hashes.astype(np.uint64, copy=False)
    total = int(h.sum(dtype=np.uint64)) if len(h) else 0
    xor = int(np.bitwise_xor.reduce(h)) if len(h) else 0
    return data_hash(len(h), total, xor)


def stored_columns(con: duckdb.DuckDBPyConnection) -> str:
    """The select list of a data set's rows as read: every stored user column, `_row_hash`, `_batch_id`."""
    names = ", ".join(quote(n) for n, _ in user_columns(con))
    return f"{names}, _row_hash, _batch_id"


def split_sql(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    ds: DatasetInfo,
    part: str,
    columns: str,
    *,
    recompute_hashes: bool = False,
) -> tuple[str, dict]:
    """`SELECT columns` over the train or holdout rows of a recorded data set (in no order) and its
    parameters; `recompute_hashes` puts each row's hash recomputed from its values in `_row_hash`."""
    if part not in ("train", "holdout"):
        raise ValueError(part)
    et = quote(settings.columns.event_time)
    row_hash = batch_hash_sql(con, "row", "d") if recompute_hashes else None
    selection = selection_sql(settings, ds.selection, ds.excluded_batches, row_hash=row_hash)
    cmp = "<" if part == "train" else ">="
    return (
        f"SELECT {columns} FROM ({selection}) WHERE {et} {cmp} $boundary",
        {**ds.params(), "boundary": ds.holdout_start_time},
    )


def read_split(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    ds: DatasetInfo,
    part: str,
    *,
    recompute_hashes: bool = False,
    with_row_hashes: bool = False,
    with_batch_ids: bool = False,
) -> pl.DataFrame:
    """The train or holdout rows of a recorded data set, in canonical order, as polars (via Arrow), with
    every stored user column (a feature removed from the config since is still there for the models that
    use it) and their `_row_hash` and `_batch_id` columns when asked.

    The rows read are hashed and compared with the hash recorded for that part, so a data set whose
    rows changed is refused rather than silently used. By default the stored per-row hashes are summed
    (nearly free); `recompute_hashes` hashes every value again, each batch over the columns it was
    stored with (what `reproduce` does, to catch rows edited in place).
    """
    query, params = split_sql(con, settings, ds, part, stored_columns(con), recompute_hashes=recompute_hashes)
    sql = f"{query} ORDER BY {key_order(settings)}"
    frame = con.sql(sql, params=params).pl()
    check_rows_read(ds, part, frame.height, frame_hash(frame["_row_hash"].to_numpy()))
    drop = [c for c, keep in (("_row_hash", with_row_hashes), ("_batch_id", with_batch_ids)) if not keep]
    return frame.drop(drop)


def check_rows_read(ds: DatasetInfo, part: str, rows: int, got_hash: str) -> None:
    """Raise DataError unless the rows read of a data set's part are its recorded ones (count and hash)."""
    expected_rows, expected_hash = (
        (ds.n_train, ds.train_hash) if part == "train" else (ds.n_holdout, ds.holdout_hash)
    )
    if rows != expected_rows or got_hash != expected_hash:
        raise DataError(
            f"data set {ds.dataset_hash}: the {part} rows read ({rows} rows, hash {got_hash}) differ from the "
            f"recorded ones ({expected_rows} rows, hash {expected_hash}): the warehouse rows behind it changed"
        )
