"""The registry's append-only ledger (champion now and in the past, rollback, review queue) and the
retrain trigger read from the ingest log."""

from datetime import datetime, timedelta

import duckdb
import pytest

from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.registry import LedgerEntry, ModelRecord
from ct_assets.core.triggers.decision import retrain_decision
from ct_assets.core.triggers.freshness import freshness
from ct_assets.store.warehouse import connect_writer, transaction

T0 = datetime(2025, 3, 1, 9, 0, 0)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def act(
    con: duckdb.DuckDBPyConnection, action: str, version: str | None, minutes: int, **kw: object
) -> LedgerEntry:
    """One ledger decision, with the champion after it as the registry's callers compute it."""
    champ = registry.champion(con)
    if action in ("promoted", "approved", "rolled_back"):
        champ = version
    return registry.record(con, action=action, version=version, champion_after=champ, now=at(minutes), **kw)


def entry(action: str, version: str | None, i: int = 0) -> LedgerEntry:
    return LedgerEntry(i, at(i), action, version, None, None, None, {}, None, None, None, None)


def all_rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute("SELECT * FROM ledger ORDER BY entry_id").fetchall()


# --------------------------------------------------------------------------------------------- ledger


def test_ledger_only_ever_appends(warehouse: Settings) -> None:
    with connect_writer(warehouse) as con, transaction(con):
        assert registry.ledger(con) == []
        assert registry.champion(con) is None
        first = act(con, "promoted", "v0001", 0, metrics={"roc_auc": 0.8}, reason="first", who="alice")
        before = all_rows(con)
        second = act(con, "blocked", "v0002", 5, verdict="blocked", run_id="r2", who="bob")
        third = act(con, "promoted", "v0003", 10, data_hash="d3")
        after = all_rows(con)
        entries = registry.ledger(con)
    assert after[: len(before)] == before  # earlier rows untouched
    assert [e.entry_id for e in entries] == [3, 2, 1]  # newest first
    assert [e.entry_id for e in (first, second, third)] == [1, 2, 3]
    assert entries[-1] == first
    assert first.metrics == {"roc_auc": 0.8}
    assert first.actor == "alice"
    assert (first.champion_before, first.champion_after) == (None, "v0001")
    assert (second.champion_before, second.champion_after) == ("v0001", "v0001")
    assert (third.champion_before, third.champion_after) == ("v0001", "v0003")
    assert second.run_id == "r2"
    assert third.actor  # the OS user when nobody is named
    assert entries[0].to_json()["recorded_at"] == at(10).isoformat()


def test_ledger_limit(warehouse: Settings) -> None:
    with connect_writer(warehouse) as con, transaction(con):
        for i in range(5):
            act(con, "promoted", f"v000{i + 1}", i)
        assert [e.version for e in registry.ledger(con, limit=2)] == ["v0005", "v0004"]


def test_champion_at_a_past_time(warehouse: Settings) -> None:
    with connect_writer(warehouse) as con, transaction(con):
        act(con, "promoted", "v0001", 0)
        act(con, "blocked", "v0002", 10)
        act(con, "promoted", "v0003", 20)
        act(con, "rolled_back", "v0001", 30)
        assert registry.champion(con, at=at(-1)) is None
        assert registry.champion(con, at=at(0)) == "v0001"
        assert registry.champion(con, at=at(15)) == "v0001"
        assert registry.champion(con, at=at(20)) == "v0003"
        assert registry.champion(con, at=at(29)) == "v0003"
        assert registry.champion(con, at=at(30)) == "v0001"
        assert registry.champion(con) == "v0001"


@pytest.mark.parametrize(
    ("actions", "stack"),
    [
        ([("promoted", "v1"), ("promoted", "v2"), ("promoted", "v3")], ["v1", "v2", "v3"]),
        ([("promoted", "v1"), ("blocked", "v2"), ("rejected", "v2"), ("approved", "v3")], ["v1", "v3"]),
        ([("promoted", "v1"), ("promoted", "v2"), ("promoted", "v3"), ("rolled_back", "v2")], ["v1", "v2"]),
        ([("promoted", "v1"), ("promoted", "v2"), ("promoted", "v3"), ("rolled_back", "v1")], ["v1"]),
        (
            [("promoted", "v1"), ("promoted", "v2"), ("rolled_back", "v1"), ("promoted", "v3")],
            ["v1", "v3"],
        ),
        ([("promoted", "v1"), ("rolled_back", "v9")], ["v1", "v9"]),
        ([("golden_rebuilt", None), ("blocked", "v1")], []),
    ],
)
def test_champion_stack(actions: list[tuple[str, str | None]], stack: list[str]) -> None:
    entries = [entry(a, v, i) for i, (a, v) in enumerate(actions)]
    assert registry.champion_stack(entries) == stack


def test_rollback_target_follows_promote_approve_rollback(warehouse: Settings) -> None:
    with connect_writer(warehouse) as con, transaction(con):
        assert registry.rollback_target(con) is None
        act(con, "promoted", "v0001", 0)
        assert registry.rollback_target(con) is None  # nothing before the first champion
        act(con, "promoted", "v0002", 1)
        assert registry.rollback_target(con) == "v0001"
        act(con, "blocked", "v0003", 2)
        act(con, "approved", "v0003", 3)
        assert registry.champion(con) == "v0003"
        assert registry.rollback_target(con) == "v0002"
        act(con, "rolled_back", "v0002", 4)
        assert registry.champion(con) == "v0002"
        assert registry.rollback_target(con) == "v0001"
        act(con, "rolled_back", "v0001", 5)
        assert registry.champion(con) == "v0001"
        assert registry.rollback_target(con) is None
        act(con, "promoted", "v0004", 6)
        assert registry.rollback_target(con) == "v0001"
        last = registry.last_verdict(con)
        assert last is not None
        assert (last.action, last.version) == ("promoted", "v0004")


def test_review_queue_holds_challengers_whose_last_word_is_blocked(warehouse: Settings) -> None:
    with connect_writer(warehouse) as con, transaction(con):
        act(con, "promoted", "v0001", 0)
        act(con, "blocked", "v0002", 1)
        act(con, "blocked", "v0003", 2)
        act(con, "blocked", "v0004", 3)
        assert [e.version for e in registry.review_queue(con)] == ["v0002", "v0003", "v0004"]
        act(con, "approved", "v0002", 4)
        act(con, "rejected", "v0003", 5)
        act(con, "golden_rebuilt", None, 6)
        queue = registry.review_queue(con)
        assert [e.version for e in queue] == ["v0004"]
        assert queue[0].action == "blocked"
        decision = registry.latest_decision(con, "v0003")
        assert decision is not None
        assert decision.action == "rejected"
        assert registry.latest_decision(con, "v0099") is None
        last = registry.last_verdict(con)
        assert last is not None
        assert last.action == "rejected"  # golden rebuilds are not verdicts


def test_models_and_validations_round_trip(warehouse: Settings) -> None:
    m = ModelRecord("v0001", at(0), "dh", "0.1+abc", {"seed": 42}, 900, 100, 1.5, 3, at(-60), "sha", "run")
    with connect_writer(warehouse) as con, transaction(con):
        registry.record_model(con, m)
        assert registry.model(con, "v0001") == m
        assert registry.model(con, "v0002") is None
        assert registry.model_versions(con) == ["v0001"]
        assert registry.models(con) == [m]
        registry.record_validation(
            con,
            challenger="v0001",
            champion=None,
            now=at(1),
            passed=False,
            failed_checks=["challenger_above_floor"],
            summary={"x": 1},
            golden_hash="g",
            dataset_hash="dh",
            report_path="/r.json",
            run_id="run",
        )
        v = registry.latest_validation(con, "v0001")
        assert v is not None
        assert v["passed"] is False
        assert v["failed_checks"] == ["challenger_above_floor"]
        assert v["summary"] == {"x": 1}
        assert registry.latest_validation(con, "v0002") is None


# ------------------------------------------------------------------------------------------- triggers


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
