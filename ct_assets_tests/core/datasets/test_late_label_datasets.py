"""Late labels in training data sets (issue 13, point 1): a data set names the labels it trained on (those
attached by batches up to its newest one), so it reads back with the same hash after more labels arrive;
a later data set takes them, its hash covering them; the holdout is the newest labelled rows; data sets
recorded before late labels existed keep their hashes.

Each test works on its own copy of a warehouse filled once for the folder (conftest.py)."""

from dataclasses import replace
from pathlib import Path

import polars as pl

from ct_assets.config import Settings
from ct_assets.core.datasets.training import (
    SELECTION_LATE_LABELS,
    SELECTION_RESERVE,
    define_training_dataset,
    read_split,
)
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.core.ingest.landing import ready_files
from ct_assets.store.warehouse import connect_writer
from ct_assets_tests.core.datasets.support import NOW, define, golden, query, use


def land_without_labels(s: Settings) -> pl.DataFrame:
    """Ingest the waiting fifth batch with none of its labels; return the labels held back."""
    (landed,) = ready_files(s.paths.landing)
    path = landed.path
    frame = pl.read_parquet(path)
    frame.with_columns(pl.lit(None, dtype=pl.Int64).alias("label")).write_parquet(path)
    (result,) = ingest_landed_files(s, now=NOW).files
    assert (result.status, result.rows_labelled) == ("ingested", 0)
    return frame.filter(pl.col("label").is_not_null()).select("row_id", "label")


def land_labels(s: Settings, labels: pl.DataFrame) -> int:
    labels.write_parquet(s.paths.landing / "labels.parquet")
    (result,) = ingest_landed_files(s, now=NOW).files
    assert (result.status, result.kind) == ("ingested", "labels"), result.reason
    return result.labels.attached


def test_a_data_set_reads_back_unchanged_after_later_labels_and_the_next_one_takes_them(
    base_data: Path, settings: Settings
) -> None:
    s = use(base_data, settings)
    labels = land_without_labels(s)
    g = golden(s)
    before = define(s, g.golden_hash)
    assert before.selection == SELECTION_LATE_LABELS and before.rows_late_labelled == 0
    newest_labelled = query(s, "SELECT max(event_time) FROM raw_deltas WHERE label IS NOT NULL")[0][0]
    newest = query(s, "SELECT max(event_time) FROM raw_deltas")[0][0]
    # The recent holdout is the newest rows whose labels are known, not the newest rows.
    assert before.newest_event_time == newest_labelled < newest
    assert before.holdout_start_time < newest_labelled

    assert land_labels(s, labels) == labels.height
    after = define(s, g.golden_hash)
    assert after.dataset_hash != before.dataset_hash
    assert after.max_batch_id == before.max_batch_id + 1
    assert after.newest_event_time == newest
    reserve = query(s, "SELECT count(*) FROM raw_deltas WHERE _batch_id = 5 AND _reserve")[0][0]
    assert after.rows_late_labelled + reserve >= labels.height - 5  # every late label outside the reserve
    assert after.n_train + after.n_holdout - before.n_train - before.n_holdout == after.rows_late_labelled

    with connect_writer(s) as con:
        for ds in (before, after):
            for part in ("train", "holdout"):
                read_split(con, s, ds, part, recompute_hashes=True)  # raises if rows or hashes differ
        old_train = read_split(con, s, before, "train")
        holdout = read_split(con, s, after, "holdout", with_row_hashes=True)
    assert set(old_train["row_id"].to_list()).isdisjoint(labels["row_id"].to_list())
    late = holdout.join(labels, on="row_id", suffix="_late")
    assert late.height > 0 and (late["label"] == late["label_late"]).all()  # the attached label is read


def test_data_sets_recorded_before_late_labels_keep_their_hash(base_data: Path, settings: Settings) -> None:
    """Rule 3 over rows that all landed labelled is rule 2: same rows, same per-row hashes."""
    s = use(base_data, settings)
    ds = define(s, golden(s).golden_hash)
    with connect_writer(s) as con:
        for part in ("train", "holdout"):
            a = read_split(con, s, ds, part, with_row_hashes=True)
            b = read_split(con, s, replace(ds, selection=SELECTION_RESERVE), part, with_row_hashes=True)
            assert a.equals(b)


def test_an_excluded_label_file_brings_no_label(base_data: Path, settings: Settings) -> None:
    """A label file a person excluded (`ct-assets batch exclude B`, or held back) attaches nothing to the
    data sets defined while it is excluded."""
    s = use(base_data, settings)
    labels = land_without_labels(s)
    land_labels(s, labels)
    g = golden(s)
    with connect_writer(s) as con:
        kept = define_training_dataset(con, s, g.golden_hash)
        left = define_training_dataset(con, s, g.golden_hash, excluded_batches=[6])
    assert kept.rows_late_labelled > 0
    assert left.rows_late_labelled == 0
    assert left.n_train + left.n_holdout == kept.n_train + kept.n_holdout - kept.rows_late_labelled
