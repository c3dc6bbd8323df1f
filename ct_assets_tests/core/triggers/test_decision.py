"""The retrain decision read from the ingest log and the champion's watermark (below and at the
threshold, only rows after the watermark, reset by a promotion), and the freshness figures."""

from datetime import timedelta

import duckdb
import pytest

from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.registry import ModelRecord
from ct_assets.core.triggers.decision import retrain_decision
from ct_assets.core.triggers.freshness import freshness
from ct_assets.store.warehouse import connect_writer, transaction
from ct_assets_tests.core.ledger import act, at


def log_batch(
    con: duckdb.DuckDBPyConnection, batch_id: int | None, labelled: int, status: str = "ingested"
) -> None:
    entry_id = con.execute("SELECT coalesce(max(entry_id), 0) + 1 FROM ingest_log").fetchall()[0][0]
    con.execute(
        "INSERT INTO ingest_log (entry_id, logged_at, file_name, file_hash, status, batch_id, rows, rows_labelled, "
        "max_event_time, landed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            entry_id,
            at(entry_id),
            f"f{entry_id}.parquet",
            f"h{entry_id}",
            status,
            batch_id,
            labelled + 5,
            labelled,
            at(entry_id) - timedelta(hours=1),
            at(entry_id),
        ],
    )


def champion_with_watermark(con: duckdb.DuckDBPyConnection, version: str, batch: int) -> None:
    registry.record_model(
        con,
        ModelRecord(
            version, at(0), "dh", "c", {}, 1, 1, 0.1, batch, at(batch) - timedelta(hours=1), "s", None
        ),
    )
    act(con, "promoted", version, 100 + batch)


def test_no_data_means_no_retrain(warehouse: Settings) -> None:
    with connect_writer(warehouse) as con:
        d = retrain_decision(con, warehouse)
    assert not d.should_run
    assert d.reason == "no data ingested yet"
    assert (d.champion, d.watermark_batch_id, d.newest_batch_id, d.rows_since_training) == (None, 0, 0, 0)
    assert d.threshold == 1000


def test_retrain_below_and_at_the_threshold(warehouse: Settings) -> None:
    with connect_writer(warehouse) as con, transaction(con):
        log_batch(con, 1, 600)
        log_batch(con, None, 5000, status="quarantined")  # never counts
        log_batch(con, None, 5000, status="duplicate")
        log_batch(con, 2, 399)
        below = retrain_decision(con, warehouse)
        log_batch(con, 3, 1)
        exactly = retrain_decision(con, warehouse)
    assert not below.should_run
    assert below.rows_since_training == 999
    assert (
        below.reason == "no trigger due: 999 labelled rows since the start (no champion yet), threshold 1000"
    )
    assert below.due == [] and below.trigger is None
    assert exactly.should_run
    assert exactly.rows_since_training == 1000
    assert exactly.newest_batch_id == 3
    assert exactly.to_json()["should_run"] is True
    assert (exactly.trigger, exactly.due) == ("rows", ["rows"])


def test_retrain_counts_only_rows_after_the_champion_watermark(warehouse: Settings) -> None:
    with connect_writer(warehouse) as con, transaction(con):
        for batch in (1, 2, 3):
            log_batch(con, batch, 700)
        champion_with_watermark(con, "v0001", batch=2)
        # Judged right after the champion's training, so that the staleness fallback is not due.
        after_promotion = retrain_decision(con, warehouse, now=at(1))
        log_batch(con, 4, 300)
        later = retrain_decision(con, warehouse, now=at(1))
    assert after_promotion.champion == "v0001"
    assert after_promotion.watermark_batch_id == 2
    assert after_promotion.rows_since_training == 700
    assert not after_promotion.should_run
    assert "champion v0001" in after_promotion.reason
    assert later.rows_since_training == 1000
    assert later.should_run


def test_promotion_resets_the_count(warehouse: Settings) -> None:
    with connect_writer(warehouse) as con, transaction(con):
        for batch in (1, 2):
            log_batch(con, batch, 800)
        assert retrain_decision(con, warehouse).should_run
        champion_with_watermark(con, "v0001", batch=2)
        d = retrain_decision(con, warehouse)
    assert not d.should_run
    assert d.rows_since_training == 0


def test_champion_without_a_model_row_counts_from_the_start(warehouse: Settings) -> None:
    with connect_writer(warehouse) as con, transaction(con):
        log_batch(con, 1, 1200)
        act(con, "promoted", "v0042", 0)
        d = retrain_decision(con, warehouse)
    assert d.champion == "v0042"
    assert d.watermark_batch_id == 0
    assert d.should_run


def test_freshness(warehouse: Settings) -> None:
    with connect_writer(warehouse) as con, transaction(con):
        now = at(60 * 24)
        empty = freshness(con, warehouse, now)
        assert empty.data_lag_hours is None
        assert empty.file_age_hours is None
        for batch in (1, 2, 3):
            log_batch(con, batch, 10)
        champion_with_watermark(con, "v0001", batch=1)
        f = freshness(con, warehouse, now, pending_mtimes=[at(2)])
        pending = freshness(con, warehouse, now, pending_mtimes=[at(2), at(500)])
    assert pending.newest_file_landed_at == at(500)
    assert f.newest_event_time == at(3) - timedelta(hours=1)
    assert f.champion_event_time == at(1) - timedelta(hours=1)
    assert f.data_lag_hours == pytest.approx(2 / 60)
    assert f.newest_file_landed_at == at(3)
    assert f.file_age_hours == pytest.approx((now - at(3)).total_seconds() / 3600)


def test_labels_attached_after_the_watermark_count_whichever_batch_their_row_landed_in(
    warehouse: Settings,
) -> None:
    """Late labels (issue 13): a label attached by a batch after the champion's watermark was never
    trained on, even when its row landed before the watermark; labels attached by earlier batches were."""
    with connect_writer(warehouse) as con, transaction(con):
        log_batch(con, 1, 400)
        log_batch(con, 2, 0)
        con.execute("UPDATE ingest_log SET kind = 'labels', labels_attached = 300 WHERE batch_id = 2")
        before = retrain_decision(con, warehouse)
        champion_with_watermark(con, "v0001", batch=2)
        log_batch(con, 3, 100)
        con.execute("UPDATE ingest_log SET labels_attached = 950 WHERE batch_id = 3")  # rows sent again
        after = retrain_decision(con, warehouse, now=at(1))
    assert before.rows_since_training == 700
    assert after.rows_since_training == 1050
    assert (after.should_run, after.trigger) == (True, "rows")
