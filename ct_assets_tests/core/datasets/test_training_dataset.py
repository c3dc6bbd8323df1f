"""The recorded, time-ordered training data set: no golden row in it, split by time in canonical
order, a window of recent rows, its content hash, and refusals when its rows changed; rows without ids
keyed by their content.

Each test works on its own copy of a warehouse filled once for the folder (conftest.py)."""

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.core.datasets.training import DatasetInfo, load_dataset, record_dataset
from ct_assets.core.gate import evaluation
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.errors import DataError
from ct_assets.store.hashing import row_hash_sql
from ct_assets.store.schema import raw_delta_columns
from ct_assets.store.warehouse import connect_writer, init_warehouse, transaction
from ct_assets_tests.core.datasets.support import NOW, define, golden, query, split, use


def test_training_selection_never_contains_a_golden_key(base_data: Path, settings: Settings) -> None:
    s = use(base_data, settings)
    g = golden(s)
    ds = define(s, g.golden_hash)
    train, holdout = split(s, ds, "train"), split(s, ds, "holdout")
    golden_ids = {
        r[0] for r in query(s, f"SELECT row_id FROM golden_rows WHERE _golden_hash = '{g.golden_hash}'")
    }
    assert len(golden_ids) == g.rows
    assert golden_ids.isdisjoint(train["row_id"].to_list())
    assert golden_ids.isdisjoint(holdout["row_id"].to_list())
    # and nothing else is left out: every labelled row is in exactly one of train, holdout, golden
    labelled = {r[0] for r in query(s, "SELECT row_id FROM raw_deltas WHERE label IS NOT NULL")}
    used = [*train["row_id"].to_list(), *holdout["row_id"].to_list(), *golden_ids]
    assert len(used) == len(set(used))
    assert set(used) == labelled
    assert ds.n_train == train.height
    assert ds.n_holdout == holdout.height
    assert train["label"].null_count() == holdout["label"].null_count() == 0
    assert ds.rows_unlabelled == query(s, "SELECT count(*) FROM raw_deltas WHERE label IS NULL")[0][0] > 0


def test_split_is_by_time_in_canonical_order(base_data: Path, settings: Settings) -> None:
    s = use(base_data, settings)
    ds = define(s, golden(s).golden_hash)
    train, holdout = split(s, ds, "train"), split(s, ds, "holdout")
    assert train["event_time"].max() < holdout["event_time"].min()
    assert holdout["event_time"].min() == ds.holdout_start_time
    share = holdout.height / (train.height + holdout.height)
    assert abs(share - s.dataset.holdout_fraction) < 0.01
    for part in (train, holdout):
        assert part.equals(part.sort("event_time", "row_id"))
    assert [c for c, _ in raw_delta_columns(s)] == train.columns


def test_the_gate_compares_on_the_newest_holdout_rows_up_to_its_cap(base_data: Path, make_settings) -> None:
    s = use(base_data, make_settings(gate={"holdout_max_rows": 50}))
    ds = define(s, golden(s).golden_hash)
    holdout = split(s, ds, "holdout")
    assert holdout.height > 50
    with connect_writer(s) as con:
        compared = evaluation.recent_holdout(con, s, ds)
    assert compared.equals(holdout.tail(50))  # the newest 50, still in canonical order
    assert compared["event_time"].min() >= holdout["event_time"].min()

    uncapped = replace(s, gate=replace(s.gate, holdout_max_rows=0))
    with connect_writer(s) as con:
        assert evaluation.recent_holdout(con, uncapped, ds).equals(holdout)


def test_rows_sharing_the_boundary_instant_all_go_to_the_holdout(base_data: Path, settings: Settings) -> None:
    s = use(base_data, settings)
    query(s, "UPDATE raw_deltas SET event_time = date_trunc('hour', event_time)")  # 4 instants in all
    ds = define(s, golden(s).golden_hash)
    train, holdout = split(s, ds, "train"), split(s, ds, "holdout")
    assert train["event_time"].max() < holdout["event_time"].min()
    # the boundary instant is not split: all of its rows went to the holdout, more than the plain share
    assert holdout["event_time"].n_unique() == 1
    assert holdout.height > round((train.height + holdout.height) * s.dataset.holdout_fraction)
    assert (train.height, holdout.height) == (ds.n_train, ds.n_holdout)


def test_training_window_keeps_only_recent_rows(base_data: Path, make_settings) -> None:
    s = use(base_data, make_settings(dataset={"window_days": 0.1, "min_train_rows": 10}))
    ds = define(s, golden(s).golden_hash)
    assert ds.window_start == ds.newest_event_time - timedelta(days=0.1)
    train = split(s, ds, "train")
    assert train["event_time"].min() >= ds.window_start
    older = query(s, f"SELECT count(*) FROM raw_deltas WHERE event_time < '{ds.window_start}'")[0][0]
    assert older > 0


def test_too_few_rows_is_a_clear_data_error(base_data: Path, make_settings) -> None:
    s = use(base_data, make_settings(dataset={"min_train_rows": 100_000}))
    g = golden(s)
    with pytest.raises(DataError, match="min_train_rows"):
        define(s, g.golden_hash)


def test_no_labelled_rows_is_a_clear_data_error(settings: Settings) -> None:
    init_warehouse(settings)
    with pytest.raises(DataError, match="no labelled rows"):
        define(settings, "none")


def test_dataset_hash_is_stable_across_redefinitions(base_data: Path, settings: Settings) -> None:
    s = use(base_data, settings)
    g = golden(s)
    first = define(s, g.golden_hash)
    again = define(s, golden(s).golden_hash)
    assert again == first
    with connect_writer(s) as con, transaction(con):
        assert record_dataset(con, first, run_id="run", now=NOW) is True
        assert record_dataset(con, again, run_id="run", now=NOW) is False
        assert load_dataset(con, first.dataset_hash) == first
        with pytest.raises(DataError, match="no training data set"):
            load_dataset(con, "0000")
    assert DatasetInfo.from_json(first.to_json()) == first
    assert query(s, "SELECT count(*) FROM dataset_versions") == [(1,)]


def test_dataset_hash_changes_when_a_row_changes(base_data: Path, settings: Settings) -> None:
    s = use(base_data, settings)
    g = golden(s)
    before = define(s, g.golden_hash)
    some_train_id = split(s, before, "train")["row_id"][10]
    # the same row id, one value different (as a different delta would have delivered it)
    cols = [n for n, _ in raw_delta_columns(s)]
    query(
        s,
        f"UPDATE raw_deltas SET tenure_months = tenure_months + 1 WHERE row_id = {some_train_id}; "
        f"UPDATE raw_deltas SET _row_hash = {row_hash_sql(cols)} WHERE row_id = {some_train_id}",
    )
    after = define(s, g.golden_hash)
    assert after.n_train == before.n_train
    assert after.train_hash != before.train_hash
    assert after.holdout_hash == before.holdout_hash
    assert after.dataset_hash != before.dataset_hash


def test_dataset_hash_changes_when_rows_arrive(base_data: Path, settings: Settings) -> None:
    s = use(base_data, settings)
    g = golden(s)
    before = define(s, g.golden_hash)
    ingest_landed_files(s, now=NOW)
    after = define(s, g.golden_hash)
    assert after.max_batch_id == before.max_batch_id + 1
    assert after.n_train + after.n_holdout > before.n_train + before.n_holdout
    assert after.dataset_hash != before.dataset_hash
    # the recorded selection still reads exactly its own rows
    assert split(s, before, "train").height == before.n_train


def test_read_split_refuses_when_rows_were_removed(base_data: Path, settings: Settings) -> None:
    s = use(base_data, settings)
    ds = define(s, golden(s).golden_hash)
    train_id = split(s, ds, "train")["row_id"][0]
    holdout_id = split(s, ds, "holdout")["row_id"][0]
    query(s, f"DELETE FROM raw_deltas WHERE row_id IN ({train_id}, {holdout_id})")
    for part in ("train", "holdout"):
        with pytest.raises(DataError, match="changed"):
            split(s, ds, part)


def test_read_split_refuses_when_a_row_was_replaced(base_data: Path, settings: Settings) -> None:
    """Same number of rows, one of them different: the rows behind the recorded hash changed."""
    s = use(base_data, settings)
    ds = define(s, golden(s).golden_hash)
    train_id = split(s, ds, "train")["row_id"][0]
    cols = [n for n, _ in raw_delta_columns(s)]
    query(
        s,
        f"UPDATE raw_deltas SET label = 1 - label WHERE row_id = {train_id}; "
        f"UPDATE raw_deltas SET _row_hash = {row_hash_sql(cols)} WHERE row_id = {train_id}",
    )
    with pytest.raises(DataError, match="changed"):
        split(s, ds, "train")


def test_read_split_knows_only_train_and_holdout(base_data: Path, settings: Settings) -> None:
    s = use(base_data, settings)
    ds = define(s, golden(s).golden_hash)
    with pytest.raises(ValueError):
        split(s, ds, "golden")


# ------------------------------------------------------------------------------------ rows without ids


def test_rows_without_ids_are_keyed_by_content(rowless_data: Path, make_settings) -> None:
    s = use(rowless_data, make_settings(columns={"row_id": ""}))
    assert s.columns.row_id is None
    g = golden(s)
    ds = define(s, g.golden_hash)
    assert ds == define(s, golden(s).golden_hash)
    train, holdout = split(s, ds, "train"), split(s, ds, "holdout")
    assert "row_id" not in train.columns
    assert train["event_time"].max() < holdout["event_time"].min()

    def hashes(frame: pl.DataFrame) -> set[int]:
        cols = [n for n, _ in raw_delta_columns(s)]
        with duckdb.connect() as con:
            con.register("f", frame.to_arrow())
            return {r[0] for r in con.execute(f"SELECT {row_hash_sql(cols)} FROM f").fetchall()}

    golden_hashes = {
        r[0] for r in query(s, f"SELECT _row_hash FROM golden_rows WHERE _golden_hash = '{g.golden_hash}'")
    }
    assert len(golden_hashes) == g.rows
    assert golden_hashes.isdisjoint(hashes(train))
    assert golden_hashes.isdisjoint(hashes(holdout))
    labelled = query(s, "SELECT count(*) FROM raw_deltas WHERE label IS NOT NULL")[0][0]
    assert train.height + holdout.height + g.rows == labelled
