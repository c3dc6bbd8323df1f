"""Every row of docs/ingest_policy.md, proven: each kind of bad input lands beside good files, goes through
the real ingest (Great Expectations, a DuckDB warehouse in a temporary folder) and ends as the policy
says, with a one-line reason naming the rule that failed (the scenario: conftest.py). The limits that
follow the configuration get a warehouse of their own."""

from collections.abc import Callable
from datetime import timedelta

import pytest

from ct_assets.config import Settings, load_settings
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.core.ingest.landing import display_name
from ct_assets.errors import ConfigError
from ct_assets.store.schema import raw_delta_columns
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.robustness.bad_inputs.cases import (
    CASES,
    Case,
    Scenario,
    assert_one_line_reason,
    case_first_id,
    land_order,
)
from ct_assets_tests.robustness.bad_inputs.makers import NOW, delta, put, stored


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_ends_as_the_policy_says(scenario: Scenario, case: Case) -> None:
    s = scenario.settings
    r = scenario.result(case.logged)
    log = scenario.query(
        "SELECT status, reason, rows, batch_id, stored_as FROM ingest_log WHERE file_name = ?", [case.logged]
    )
    assert len(log) == 1, log
    status, reason, rows, batch_id, stored_as = log[0]
    assert not (s.paths.landing / case.file).exists()
    i = CASES.index(case)
    ids = (case_first_id(i), case_first_id(i) + 999_999)
    in_warehouse = scenario.query("SELECT count(*) FROM raw_deltas WHERE row_id BETWEEN ? AND ?", list(ids))
    if case.logged in scenario.expected:  # ingested correctly
        want = scenario.expected[case.logged]
        assert (r.status, status) == ("ingested", "ingested"), r.reason
        assert r.rows == rows == want.height
        assert r.rows_labelled == want["label"].count()
        assert (s.paths.archive / case.file).is_file()
        assert stored_as == display_name(str(s.paths.archive / case.file))
        if case.fragments:
            assert_one_line_reason(r.reason, case.logged, case.fragments)
            assert reason == r.reason
        else:
            assert r.reason == "" and reason is None
        cols = ", ".join(f'"{n}"' for n, _ in raw_delta_columns(s))
        with connect_reader(s) as con:
            got = con.sql(f"SELECT {cols} FROM raw_deltas WHERE _batch_id = {batch_id} ORDER BY row_id").pl()
        assert got.equals(stored(want, s), null_equal=True)
    else:  # quarantined whole
        assert (r.status, status) == ("quarantined", "quarantined")
        assert_one_line_reason(r.reason, case.logged, case.fragments)
        assert reason == r.reason
        assert r.rows == rows == 0 and r.batch_id is None and batch_id is None
        assert in_warehouse == [(0,)]
        moved = s.paths.quarantine / case.file
        assert moved.is_file() and not (s.paths.archive / case.file).exists()
        assert stored_as == display_name(str(moved))
        reason_file = s.paths.quarantine / f"{case.file}.reason.txt"
        assert reason_file.read_text(encoding="utf-8").splitlines()[0] == reason


def test_reasons_name_the_rule_that_failed(scenario: Scenario) -> None:
    """Validated files carry the failed expectations (the reason file's JSON and the check tables)."""
    unique = scenario.result("large_repeated_id.parquet")
    failed = [o for o in unique.outcomes if not o.success]
    assert [(o.check, o.column) for o in failed] == [("raw_deltas_row_ids_unique", "row_id")]
    assert unique.chunks == 2
    tail = scenario.result("large_bad_tail.csv")
    assert tail.chunks == 2  # the bad value is in the second chunk: the first passed, nothing went in
    assert {o.column for o in tail.outcomes if not o.success} == {"support_calls"}
    fractional = [o for o in scenario.result("fractional_id.parquet").outcomes if not o.success]
    assert [(o.check, o.column, o.expectation) for o in fractional] == [
        ("raw_deltas_schema_valid", "row_id", "values fit the warehouse type BIGINT")
    ]
    for name in ("empty.csv", "truncated.parquet", "ragged.csv", "link.parquet"):
        assert scenario.result(name).outcomes == []  # never validated: unreadable or not a file


# Cases that need a configuration of their own: the conftest fixtures give each its own warehouse.


def test_limits_follow_the_configuration(make_settings: Callable[..., Settings]) -> None:
    """A feature without bounds still refuses +/-infinity (outside +/-1e308); `[freshness]
    max_event_age_days = 0` lifts the age limit; a negative limit is refused with the key named."""
    base = load_settings(None)  # the defaults (make_settings below points CT_ASSETS_CONFIG elsewhere)
    assert base.freshness.max_event_age_days == 3650
    with pytest.raises(ConfigError, match=r"\[freshness\] max_event_age_days"):
        make_settings(freshness={"max_event_age_days": -1})
    features = {
        f.name: {"kind": f.kind, "required": f.required}
        | ({"categories": list(f.categories)} if f.categories else {})
        | ({"min": f.min, "max": f.max} if f.kind == "numeric" and f.name != "usage_hours" else {})
        for f in base.features
    }
    s = make_settings(features=features, freshness={"max_event_age_days": 0})
    assert s.feature("usage_hours").max is None and s.freshness.max_event_age_days == 0
    init_warehouse(s)
    good = simulate(s, SimulationOptions(batches=1, rows=200, seed=5), now=NOW)[0]
    landing = s.paths.landing
    put(delta(1_000_000, 50, seed=21), "usage_hours", 3, float("-inf")).write_parquet(landing / "inf.parquet")
    old = put(delta(2_000_000, 50, seed=22), "event_time", 0, NOW - timedelta(days=20_000))
    old.write_parquet(landing / "ancient.parquet")
    land_order(landing, [good.name, "inf.parquet", "ancient.parquet"])

    report = ingest_landed_files(s, now=NOW)
    assert [(f.name, f.status) for f in report.files] == [
        (good.name, "ingested"),
        ("inf.parquet", "quarantined"),
        ("ancient.parquet", "ingested"),
    ]
    assert_one_line_reason(
        report.files[1].reason, "inf.parquet", ("'usage_hours'", "expect_column_values_to_be_between", "-inf")
    )
    with connect_reader(s) as con:
        assert con.execute("SELECT count(*), min(event_time) FROM raw_deltas").fetchall() == [
            (250, NOW - timedelta(days=20_000))
        ]
        assert con.execute("SELECT count(*) FROM ingest_log").fetchall() == [(3,)]
