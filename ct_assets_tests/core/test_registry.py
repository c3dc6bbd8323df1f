"""The registry's append-only ledger: the champion now and at a past time, the champion stack and the
rollback target, the review queue, and the models and validations tables."""

import duckdb
import pytest

from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.registry import LedgerEntry, ModelRecord
from ct_assets.store.warehouse import connect_writer, transaction
from ct_assets_tests.core.ledger import act, at


def entry(action: str, version: str | None, i: int = 0) -> LedgerEntry:
    return LedgerEntry(i, at(i), action, version, None, None, None, {}, None, None, None, None)


def all_rows(con: duckdb.DuckDBPyConnection) -> list[tuple]:
    return con.execute("SELECT * FROM ledger ORDER BY entry_id").fetchall()


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
