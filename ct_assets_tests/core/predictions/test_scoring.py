"""The champion's predictions of the rows that landed: every row scored once, by the champion in force,
newest first within a bound per run; rows that landed before any champion, or while it could not be
loaded, wait for a later run; rows without an id are keyed by their row hash."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.core.predictions.scoring import Backlog, score_new_rows
from ct_assets.store.warehouse import init_warehouse
from ct_assets_tests.core.predictions.support import batch, count, land, predictions, register


def test_the_backlog_takes_the_newest_batches_first_within_the_bound() -> None:
    backlog = Backlog([(5, 100, 0), (4, 100, 40), (3, 100, 100), (2, 100, 0), (1, 50, 0)])
    assert backlog.waiting == 100 + 60 + 100 + 50
    assert backlog.scored == 140
    assert backlog.chosen(1000) == [(5, 100, True), (4, 60, False), (2, 100, True), (1, 50, True)]
    assert backlog.chosen(130) == [(5, 100, True), (4, 30, False)]
    assert backlog.chosen(100) == [(5, 100, True)]
    assert backlog.chosen(250) == [(5, 100, True), (4, 60, False), (2, 90, False)]
    assert Backlog([(1, 10, 10)]).chosen(5) == []


def test_rows_wait_for_a_champion_then_each_is_scored_once_by_it(warehouse: Settings) -> None:
    s = warehouse
    first = batch(1, 400, seed=1)
    b1 = land(s, first, "a.parquet")
    b2 = land(s, batch(401, 300, seed=2), "b.parquet")

    waiting = score_new_rows(s, run_id="run-1")
    assert (waiting.champion, waiting.not_scored, waiting.rows_scored) == (None, "no champion yet", 0)
    assert waiting.rows_remaining == 700
    assert count(s, "SELECT count(*) FROM predictions") == 0

    model = register(s, "v0001", first, watermark_batch_id=b1)
    scored = score_new_rows(s, run_id="run-2")
    assert (scored.champion, scored.not_scored, scored.rows_scored, scored.rows_remaining) == (
        "v0001",
        "",
        700,
        0,
    )
    assert scored.rows_total == 700 and scored.batches == [b2, b1]
    table = predictions(s)
    assert table.height == 700 and table["row_id"].n_unique() == 700
    assert set(table["role"]) == {"champion"} and set(table["model_version"]) == {"v0001"}
    assert set(table["run_id"]) == {"run-2"}
    # Each row's score is the model's score of that row, and its decision is the score at the threshold.
    rows = pl.concat([first, batch(401, 300, seed=2)]).sort("row_id")
    assert table["row_id"].to_list() == rows["row_id"].to_list()
    assert table["event_time"].to_list() == rows["event_time"].to_list()
    np.testing.assert_allclose(table["score"].to_numpy(), model.predict(rows), rtol=0, atol=1e-12)
    assert table["decision"].to_list() == (table["score"] >= s.decision_threshold).to_list()
    assert scored.rows_positive == int(table["decision"].sum())

    again = score_new_rows(s, run_id="run-3")
    assert (again.rows_scored, again.rows_remaining, again.rows_total, again.not_scored) == (0, 0, 700, "")
    assert count(s, "SELECT count(*) FROM predictions") == 700  # append-only, nothing twice


def test_the_bound_scores_the_newest_rows_first_and_the_rest_later(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings(predictions={"max_rows_per_run": 300})
    init_warehouse(s)
    first = batch(1, 250, seed=3)
    b1 = land(s, first, "a.parquet")
    b2 = land(s, batch(251, 250, seed=4), "b.parquet")
    register(s, "v0001", first, watermark_batch_id=b1)

    one = score_new_rows(s)
    assert (one.rows_scored, one.rows_remaining, one.batches) == (300, 200, [b2, b1])
    scored = predictions(s)
    assert scored.filter(pl.col("_batch_id") == b2).height == 250
    # Of the older batch, its newest 50 rows (ids follow event times in these frames).
    assert scored.filter(pl.col("_batch_id") == b1)["row_id"].to_list() == list(range(201, 251))

    two = score_new_rows(s)
    assert (two.rows_scored, two.rows_remaining, two.batches) == (200, 0, [b1])
    three = score_new_rows(s)
    assert (three.rows_scored, three.rows_remaining) == (0, 0)
    table = predictions(s)
    assert table.height == 500 and table["row_id"].n_unique() == 500


def test_a_champion_that_cannot_be_loaded_leaves_the_rows_waiting(warehouse: Settings) -> None:
    s = warehouse
    first = batch(1, 300, seed=5)
    b1 = land(s, first, "a.parquet")
    register(s, "v0001", first, watermark_batch_id=b1)
    model_file = s.paths.models / "v0001" / "model.txt"
    good = model_file.read_text()
    model_file.write_text(good + "\n")  # no longer the file its card names

    broken = score_new_rows(s)  # reported, not raised: the ingest run goes on
    assert broken.rows_scored == 0 and broken.rows_remaining == 300
    assert broken.not_scored.startswith("v0001 could not be loaded:")
    assert "SHA-256" in broken.not_scored
    assert count(s, "SELECT count(*) FROM predictions") == 0

    model_file.write_text(good)
    assert score_new_rows(s).rows_scored == 300


def test_rows_without_an_id_are_keyed_by_their_row_hash(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(columns={"row_id": ""})
    init_warehouse(s)
    rows = batch(1, 300, seed=6, s=s)
    rows = pl.concat([rows, rows.slice(10, 2)])  # two rows equal in every value to earlier ones
    b1 = land(s, rows, "a.parquet")
    register(s, "v0001", rows, watermark_batch_id=b1)

    scored = score_new_rows(s)
    assert (scored.rows_scored, scored.rows_remaining) == (300, 0)
    table = predictions(s)
    assert "_row_hash" in table.columns and "row_id" not in table.columns
    assert table["_row_hash"].n_unique() == 300
    assert score_new_rows(s).rows_scored == 0  # equal rows share their one prediction


@pytest.mark.parametrize("threshold", [0.1, 0.3])
def test_the_decision_is_taken_at_the_configured_threshold(
    make_settings: Callable[..., Settings], threshold: float
) -> None:
    s = make_settings(**{"": {"decision_threshold": threshold}})
    init_warehouse(s)
    first = batch(1, 400, seed=7)
    b1 = land(s, first, "a.parquet")
    register(s, "v0001", first, watermark_batch_id=b1)
    scored = score_new_rows(s)
    table = predictions(s)
    assert table["decision"].to_list() == (table["score"] >= threshold).to_list()
    assert 0 < scored.rows_positive == int(table["decision"].sum()) < 400
