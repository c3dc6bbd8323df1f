"""The training selection (rule 2): the labelled rows of the window minus the golden reserve, rows equal
in content to a reserve row under another id, and held-back batches; what it left out, counted exactly;
the recorded selection read back to its recorded hash; and a data set recorded under rule 1 (before the
reserve existed) still read back, as `reproduce` promises.

The warehouse holds what real data holds: distinct rows that agree on every configured value but the
id (some with another label). Every expectation is computed here in SQL from the values themselves,
not from the stored content hashes the selection uses."""

from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.core.datasets.overlap import golden_overlap
from ct_assets.core.datasets.training import (
    SELECTION_GOLDEN_KEYS,
    SELECTION_LATE_LABELS,
    DatasetInfo,
    define_training_dataset,
    frame_hash,
    load_dataset,
    read_split,
    record_dataset,
)
from ct_assets.store.hashing import combine
from ct_assets.store.schema import content_columns
from ct_assets.store.warehouse import connect_writer, transaction
from ct_assets_tests.core.datasets.support import NOW, fill, golden, query, use
from ct_assets_tests.helpers.data import frames_with_twins

CONFIG = "[retrain]\nmin_new_rows = 1000\n[dataset]\ngolden_fraction = 0.2\n"
SHORT_WINDOW = 3.2  # days: cuts batch 1 (the oldest day) in two


@pytest.fixture(scope="module")
def twins_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four batches; batch 3 re-lands 400 events of batch 1 and 300 of batch 2 (those with another label)
    under new ids, so that reserve rows have content twins outside the reserve and the other way round."""
    return fill(tmp_path_factory.mktemp("twins"), CONFIG, frames_with_twins(NOW))


def expected(s: Settings, max_batch: int, excluded: tuple[int, ...] = ()) -> dict[str, set[int]]:
    """Row ids of the window by what the selection must do with them, decided from the values: reserved,
    same_content (equal in event time and every feature to a reserve row), held_back, trained."""
    content = content_columns(s)
    equal = " AND ".join(f'r."{c}" IS NOT DISTINCT FROM w."{c}"' for c in content)
    held = f"w._batch_id IN ({', '.join(map(str, excluded))})" if excluded else "false"
    (newest,) = query(
        s, f"SELECT max(event_time) FROM raw_deltas WHERE label IS NOT NULL AND _batch_id <= {max_batch}"
    )[0]
    start = newest - timedelta(days=s.dataset.window_days)
    rows = query(
        s,
        f"""SELECT w.row_id, CASE
                WHEN w._reserve THEN 'reserved'
                WHEN EXISTS (SELECT 1 FROM raw_deltas r WHERE r._reserve AND r._batch_id <= {max_batch} AND {equal})
                    THEN 'same_content'
                WHEN {held} THEN 'held_back'
                ELSE 'trained' END
            FROM raw_deltas w
            WHERE w._batch_id <= {max_batch} AND w.label IS NOT NULL AND w.event_time >= '{start}'""",
    )
    out: dict[str, set[int]] = {k: set() for k in ("reserved", "same_content", "held_back", "trained")}
    for row_id, reason in rows:
        out[reason].add(int(row_id))
    return out


def split_ids(s: Settings, ds: DatasetInfo) -> tuple[list[int], list[int]]:
    with connect_writer(s) as con:
        return tuple(read_split(con, s, ds, part)["row_id"].to_list() for part in ("train", "holdout"))  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("window_days", "excluded"),
    [(365.0, ()), (365.0, (2,)), (SHORT_WINDOW, (3,))],
    ids=["whole window", "batch 2 held back", "short window, batch 3 held back"],
)
def test_the_selection_leaves_out_the_reserve_its_content_twins_and_held_back_batches(
    twins_data: Path, make_settings, window_days: float, excluded: tuple[int, ...]
) -> None:
    s = use(twins_data, make_settings(dataset={"golden_fraction": 0.2, "window_days": window_days}))
    with connect_writer(s) as con:
        ds = define_training_dataset(con, s, "g", excluded)
    want = expected(s, ds.max_batch_id, excluded)
    # the warehouse holds every case the rule must handle
    assert len(want["reserved"]) > 100 and len(want["same_content"]) > 50, {
        k: len(v) for k, v in want.items()
    }
    assert (len(want["held_back"]) > 0) == bool(excluded)
    train, holdout = split_ids(s, ds)
    assert len(train) + len(holdout) == len(set(train) | set(holdout))  # no row twice
    assert set(train) | set(holdout) == want["trained"]
    assert (ds.n_train, ds.n_holdout) == (len(train), len(holdout))
    # rule 3: rule 2 over effective labels (none arrived late here)
    assert ds.selection == SELECTION_LATE_LABELS and ds.excluded_batches == excluded
    assert (ds.rows_reserved, ds.rows_same_content, ds.rows_held_back) == (
        len(want["reserved"]),
        len(want["same_content"]),
        len(want["held_back"]),
    )
    (unlabelled,) = query(
        s, f"SELECT count(*) FROM raw_deltas WHERE label IS NULL AND _batch_id <= {ds.max_batch_id}"
    )[0]
    assert ds.rows_unlabelled == unlabelled > 0
    if window_days == SHORT_WINDOW:  # the window cut batch 1 in two; its older rows are not counted at all
        cut = query(
            s,
            "SELECT count(*) FILTER (WHERE event_time < $1), count(*) FILTER (WHERE event_time >= $1) "
            "FROM raw_deltas WHERE label IS NOT NULL AND _batch_id = 1".replace("$1", f"'{ds.window_start}'"),
        )
        assert all(n > 0 for n in cut[0]), cut


def test_no_training_row_is_a_reserve_row_or_equal_in_content_to_one(twins_data: Path, make_settings) -> None:
    s = use(twins_data, make_settings(dataset={"golden_fraction": 0.2}))
    with connect_writer(s) as con:
        ds = define_training_dataset(con, s, "g")
        rows = pl.concat([read_split(con, s, ds, part) for part in ("train", "holdout")])
        reserve = con.sql(
            f"SELECT row_id, {', '.join(content_columns(s))} FROM raw_deltas WHERE _reserve"
        ).pl()
    assert set(rows["row_id"].to_list()).isdisjoint(reserve["row_id"].to_list())
    twins = rows.join(reserve.drop("row_id"), on=content_columns(s), nulls_equal=True)
    assert twins.height == 0
    # while the warehouse does hold labelled non-reserve rows equal in content to reserve rows
    with connect_writer(s) as con:
        outside = con.sql(
            f"SELECT row_id, {', '.join(content_columns(s))} FROM raw_deltas WHERE NOT _reserve AND label IS NOT NULL"
        ).pl()
    assert outside.join(reserve.drop("row_id"), on=content_columns(s), nulls_equal=True).height > 50


def test_a_held_back_batch_is_recorded_and_read_back_without_its_rows(
    twins_data: Path, make_settings
) -> None:
    s = use(twins_data, make_settings(dataset={"golden_fraction": 0.2}))
    with connect_writer(s) as con, transaction(con):
        ds = define_training_dataset(con, s, "g", [4, 2, 2])
        assert record_dataset(con, ds, run_id="run", now=NOW)
        back = load_dataset(con, ds.dataset_hash)
    assert back == ds
    assert back.excluded_batches == (2, 4)
    assert query(
        s, f"SELECT excluded_batches FROM dataset_versions WHERE dataset_hash = '{ds.dataset_hash}'"
    ) == [("[2, 4]",)]
    train, holdout = split_ids(s, back)
    batches = dict(query(s, "SELECT row_id, _batch_id FROM raw_deltas"))
    assert {batches[i] for i in train + holdout} == {1, 3}
    # a data set with nothing held back is another data set, with more rows
    with connect_writer(s) as con:
        full = define_training_dataset(con, s, "g")
    assert full.dataset_hash != ds.dataset_hash
    assert full.n_train + full.n_holdout == ds.n_train + ds.n_holdout + ds.rows_held_back
    assert full.rows_held_back == 0 and full.excluded_batches == ()


def test_reading_the_split_back_gives_the_recorded_hashes(twins_data: Path, make_settings) -> None:
    s = use(twins_data, make_settings(dataset={"golden_fraction": 0.2}))
    g = golden(s)
    with connect_writer(s) as con, transaction(con):
        ds = define_training_dataset(con, s, g.golden_hash, [2])
        record_dataset(con, ds, run_id="run", now=NOW)
        back = load_dataset(con, ds.dataset_hash)
        parts = {}
        for part in ("train", "holdout"):
            fast = read_split(con, s, back, part, with_row_hashes=True)
            again = read_split(con, s, back, part, recompute_hashes=True, with_row_hashes=True)
            assert fast.equals(again)
            parts[part] = frame_hash(fast["_row_hash"].to_numpy())
        overlap = golden_overlap(con, s, back)
    assert parts == {"train": ds.train_hash, "holdout": ds.holdout_hash}
    assert ds.dataset_hash == combine(train=ds.train_hash, holdout=ds.holdout_hash, golden=g.golden_hash)
    assert (overlap.by_key, overlap.by_content) == (0, 0)


# ------------------------------------------------------------------------------- rule 1, recorded before


def record_rule_1(s: Settings, max_batch: int) -> tuple[DatasetInfo, set[int]]:
    """A data set as ct_assets recorded it before schema 4: an old golden set (every 9th labelled row,
    reserve or not) and every labelled row of the window but that golden set's keys, split by time;
    its row in dataset_versions has no selection, exclusions or counts (what the upgrade leaves)."""
    ghash = "0ld901den0000000"
    query(
        s,
        f"""INSERT INTO golden_rows SELECT * EXCLUDE (_batch_id, _row_hash, _reserve, _content_hash),
                _batch_id, _row_hash, '{ghash}' FROM raw_deltas
            WHERE label IS NOT NULL AND row_id % 9 = 0 AND _batch_id <= {max_batch}""",
    )
    (newest,) = query(
        s, f"SELECT max(event_time) FROM raw_deltas WHERE label IS NOT NULL AND _batch_id <= {max_batch}"
    )[0]
    start = newest - timedelta(days=s.dataset.window_days)
    rows = pl.DataFrame(
        query(
            s,
            f"""SELECT row_id, event_time, _row_hash FROM raw_deltas WHERE _batch_id <= {max_batch}
                AND label IS NOT NULL AND event_time >= '{start}'
                AND row_id NOT IN (SELECT row_id FROM golden_rows WHERE _golden_hash = '{ghash}')""",
        ),
        schema={"row_id": pl.Int64, "event_time": pl.Datetime("us"), "_row_hash": pl.UInt64},
        orient="row",
    )
    n_holdout = round(rows.height * s.dataset.holdout_fraction)
    boundary: datetime = rows["event_time"].sort(descending=True)[n_holdout - 1]
    train, holdout = (
        rows.filter(pl.col("event_time") < boundary),
        rows.filter(pl.col("event_time") >= boundary),
    )
    th, hh = frame_hash(train["_row_hash"].to_numpy()), frame_hash(holdout["_row_hash"].to_numpy())
    dhash = combine(train=th, holdout=hh, golden=ghash)
    query(
        s,
        f"""INSERT INTO dataset_versions (dataset_hash, created_at, max_batch_id, window_start, newest_event_time,
                golden_hash, n_train, n_holdout, train_hash, holdout_hash, holdout_start_time, rows_unlabelled, run_id)
            VALUES ('{dhash}', '{NOW}', {max_batch}, '{start}', '{newest}', '{ghash}', {train.height},
                {holdout.height}, '{th}', '{hh}', '{boundary}', 0, 'old-run')""",
    )
    with connect_writer(s) as con:
        return load_dataset(con, dhash), set(rows["row_id"].to_list())


def test_a_data_set_recorded_under_rule_1_still_reads_back(twins_data: Path, make_settings) -> None:
    """Rule 1 took every labelled row of the window but the golden set's keys, reserve rows and their
    twins included: read back (hashing every value again, as `reproduce` does), it is exactly those rows,
    while today's rule on the same batches is another data set."""
    s = use(twins_data, make_settings(dataset={"golden_fraction": 0.2}))
    old, want = record_rule_1(s, max_batch=3)
    assert old.selection == SELECTION_GOLDEN_KEYS
    assert (old.excluded_batches, old.rows_reserved, old.rows_same_content, old.rows_held_back) == (
        (),
        0,
        0,
        0,
    )
    with connect_writer(s) as con:
        parts = [read_split(con, s, old, part, recompute_hashes=True) for part in ("train", "holdout")]
        overlap = golden_overlap(con, s, old)
    ids = [i for p in parts for i in p["row_id"].to_list()]
    assert set(ids) == want and len(ids) == len(want)
    assert parts[0]["event_time"].max() < parts[1]["event_time"].min()
    reserved = {r[0] for r in query(s, "SELECT row_id FROM raw_deltas WHERE _reserve")}
    assert want & reserved  # rule 1 trained on reserve rows: reading it with rule 2 would give other rows
    assert overlap.by_key == 0  # its own golden set's keys stay out
    # the same batches under today's rule: rows differ, and so does the hash
    with connect_writer(s) as con:
        now_rule = define_training_dataset(con, s, old.golden_hash)
    assert now_rule.max_batch_id == 4 and now_rule.dataset_hash != old.dataset_hash
