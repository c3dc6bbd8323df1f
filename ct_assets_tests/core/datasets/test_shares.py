"""A data set's train rows read in shares (what each Dask worker reads from DuckLake): the shares, one
after another, are exactly read_split's rows in its order; what a worker prepares from its share (model
matrix, labels, hash parts, profile rows) adds up to what one process computes from all the rows."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ct_assets.config import Settings
from ct_assets.core.datasets.shares import plan_shares, read_share, train_categories
from ct_assets.core.datasets.training import DatasetInfo, read_split
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.modeling.dask_shares import MASK64, load_share
from ct_assets.store.hashing import data_hash
from ct_assets.store.warehouse import connect_reader
from ct_assets_tests.core.datasets.support import define, golden, query, use


def _all_rows(s: Settings, ds: DatasetInfo) -> pl.DataFrame:
    with connect_reader(s) as con:
        return read_split(con, s, ds, "train", with_row_hashes=True, with_batch_ids=True)


def _shares(s: Settings, ds: DatasetInfo, parts: int) -> list[pl.DataFrame]:
    with connect_reader(s) as con:
        return [read_share(con, s, ds, share) for share in plan_shares(con, s, ds, parts)]


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
def test_shares_in_turn_are_the_train_rows_in_canonical_order(
    base_data: Path, settings: Settings, parts: int
) -> None:
    s = use(base_data, settings)
    ds = define(s, golden(s).golden_hash)
    pieces = _shares(s, ds, parts)
    assert len(pieces) == parts
    sizes = [p.height for p in pieces]
    assert max(sizes) - min(sizes) <= 1, sizes
    assert_frame_equal(pl.concat(pieces), _all_rows(s, ds))


def test_shares_of_rows_without_ids_follow_their_content_hash(rowless_data: Path, make_settings) -> None:
    s = use(rowless_data, make_settings(columns={"row_id": ""}))
    ds = define(s, golden(s).golden_hash)
    assert_frame_equal(pl.concat(_shares(s, ds, 4)), _all_rows(s, ds))


def test_a_cut_never_splits_rows_of_one_key(base_data: Path, settings: Settings) -> None:
    """Rows sharing event time and id (here made so by hand) stay in one share: the cut moves to the
    key's first row, and cuts that meet merge."""
    s = use(base_data, settings)
    ds = define(s, golden(s).golden_hash)
    rows = _all_rows(s, ds)
    # Give the 3rd..12th train rows the 2nd one's key: a run of 11 rows of one key at positions 1..11.
    first = rows.row(1, named=True)
    ids = ", ".join(str(i) for i in rows["row_id"][2:12].to_list())
    query(
        s,
        f"UPDATE raw_deltas SET row_id = {first['row_id']}, event_time = '{first['event_time']}' "
        f"WHERE row_id IN ({ids})",
    )
    with connect_reader(s) as con:
        plan = plan_shares(con, s, ds, ds.n_train // 4)
    starts = [share.start for share in plan]
    assert not any(1 < start <= 11 for start in starts) and 1 in starts and 12 in starts
    pieces = _shares(s, ds, ds.n_train // 4)
    assert sum(p.height for p in pieces) == ds.n_train
    assert any(p.height >= 11 for p in pieces)


def test_what_workers_prepare_adds_up_to_one_process_on_all_rows(base_data: Path, settings: Settings) -> None:
    s = use(base_data, settings)
    ds = define(s, golden(s).golden_hash)
    rows = _all_rows(s, ds)
    with connect_reader(s) as con:
        features = lgbm.feature_spec_from(s, train_categories(con, s, ds))
        plan = plan_shares(con, s, ds, 3)
    assert features == lgbm.feature_spec(s, rows)
    stride = 7
    prepared = [load_share(s, ds, share, features, None, stride, False) for share in plan]
    assert np.array_equal(
        np.concatenate([p.x for p in prepared]), lgbm.encode(rows, features), equal_nan=True
    )
    assert np.array_equal(np.concatenate([p.y for p in prepared]), lgbm.labels(rows, s))
    assert all(p.weights is None and not p.summary.weighted for p in prepared)
    summaries = [p.summary for p in prepared]
    total = sum(x.rows for x in summaries)
    xor = 0
    for x in summaries:
        xor ^= x.hash_xor
    assert data_hash(total, sum(x.hash_sum for x in summaries) & MASK64, xor) == ds.train_hash
    assert sum(x.positives for x in summaries) == int(lgbm.labels(rows, s).sum())
    assert_frame_equal(
        pl.concat([x.profile for x in summaries]), rows.select(s.feature_names).gather_every(stride)
    )


def test_rows_recomputed_on_a_worker_catch_a_row_edited_in_place(base_data: Path, settings: Settings) -> None:
    """A label flipped in place, its stored hash left alone: only hashing the values again shows it."""
    s = use(base_data, settings)
    ds = define(s, golden(s).golden_hash)
    victim = _all_rows(s, ds)["row_id"][5]
    query(s, f"UPDATE raw_deltas SET label = 1 - label WHERE row_id = {victim}")
    with connect_reader(s) as con:
        features = lgbm.feature_spec_from(s, train_categories(con, s, ds))
        plan = plan_shares(con, s, ds, 2)

    def train_hash(recompute: bool) -> str:
        parts = [load_share(s, ds, share, features, None, 1, recompute).summary for share in plan]
        xor = 0
        for p in parts:
            xor ^= p.hash_xor
        return data_hash(sum(p.rows for p in parts), sum(p.hash_sum for p in parts) & MASK64, xor)

    assert train_hash(False) == ds.train_hash
    assert train_hash(True) != ds.train_hash


def test_beyond_the_sample_the_cuts_come_from_sampled_keys(base_data: Path, settings: Settings) -> None:
    """More train rows than the planning sample: shares still cover every row once, in order, start at
    exact positions, and are near even (a 300-key sample of some 3,000 rows)."""
    s = use(base_data, settings)
    ds = define(s, golden(s).golden_hash)
    assert ds.n_train > 1000
    with connect_reader(s) as con:
        plan = plan_shares(con, s, ds, 3, sample_rows=300)
        pieces = [read_share(con, s, ds, share) for share in plan]
    assert len(pieces) == 3
    assert [share.start for share in plan] == [0, pieces[0].height, pieces[0].height + pieces[1].height]
    assert all(abs(p.height - ds.n_train / 3) < ds.n_train * 0.1 for p in pieces), [p.height for p in pieces]
    assert_frame_equal(pl.concat(pieces), _all_rows(s, ds))
