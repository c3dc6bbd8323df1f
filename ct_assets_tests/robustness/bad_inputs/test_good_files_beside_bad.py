"""Beside the bad files: the good files go in, a large one in chunks, the warehouse holds exactly the good
rows, the ingest log has one row per file, the next good file goes in; ids and bytes seen before are
dropped or marked duplicate (quarantined bytes quarantined again); symlinks, files not ready and
folders are left alone or quarantined as the policy says."""

import os

import polars as pl

from ct_assets.core.ingest.landing import display_name
from ct_assets_tests.robustness.bad_inputs.cases import Scenario, assert_one_line_reason
from ct_assets_tests.robustness.bad_inputs.makers import CHUNK_ROWS, LARGE_ROWS


def test_good_files_beside_bad_ones_go_in(scenario: Scenario) -> None:
    s = scenario.settings
    for name in scenario.good1:
        r = scenario.result(name)
        frame = scenario.expected[name]
        assert r.status == "ingested", r.reason
        assert r.reason == ""
        assert (r.rows, r.rows_duplicate) == (frame.height, 0)
        assert r.rows_labelled == frame["label"].count()
        assert (s.paths.archive / name).is_file()


def test_a_large_file_is_validated_and_appended_in_chunks(scenario: Scenario) -> None:
    large = scenario.result(scenario.good1[-1])
    assert large.status == "ingested", large.reason
    assert large.chunks == LARGE_ROWS // CHUNK_ROWS == 3
    assert large.rows == LARGE_ROWS
    frame = scenario.expected[scenario.good1[-1]]
    got = scenario.query(
        "SELECT count(*), count(DISTINCT row_id), min(row_id), max(row_id), count(label) FROM raw_deltas "
        "WHERE _batch_id = ?",
        [large.batch_id],
    )
    assert got == [
        (LARGE_ROWS, LARGE_ROWS, frame["row_id"].min(), frame["row_id"].max(), frame["label"].count())
    ]
    # every expectation saw every row: the counts of the chunks add up
    not_null = [o for o in large.outcomes if o.expectation == "expect_column_values_to_not_be_null"]
    assert not_null and all(o.element_count == LARGE_ROWS for o in not_null)


def test_warehouse_holds_exactly_the_good_rows(scenario: Scenario) -> None:
    want = pl.concat([f.select("row_id") for f in scenario.expected.values()])["row_id"]
    got = scenario.query("SELECT row_id FROM raw_deltas ORDER BY row_id")
    assert [r[0] for r in got] == sorted(want.to_list())
    ingested = [f for f in scenario.round1.files + scenario.round2.files if f.status == "ingested"]
    assert sum(f.rows for f in ingested) == len(got) == want.len()
    assert scenario.query(
        "SELECT sum(rows), sum(rows_labelled) FROM ingest_log WHERE status = 'ingested'"
    ) == scenario.query("SELECT count(*), count(label) FROM raw_deltas")


def test_ingest_log_has_one_row_per_file(scenario: Scenario) -> None:
    rows = scenario.query("SELECT file_name, run_id FROM ingest_log ORDER BY entry_id")
    assert [r[0] for r in rows] == scenario.logged1 + scenario.logged2
    assert [f.name for f in scenario.round1.files] == scenario.logged1
    assert [f.name for f in scenario.round2.files] == scenario.logged2
    assert {r[1] for r in rows[: len(scenario.logged1)]} == {"round-1"}
    assert {r[1] for r in rows[len(scenario.logged1) :]} == {"round-2"}
    # and every handled file is in the archive or the quarantine, under its own name
    s = scenario.settings
    handled = [p.name for p in s.paths.archive.iterdir()]
    handled += [p.name for p in s.paths.quarantine.iterdir() if not p.name.endswith(".reason.txt")]
    assert sorted(display_name(n) for n in handled) == sorted(scenario.logged1 + scenario.logged2)


def test_the_next_good_file_goes_in(scenario: Scenario) -> None:
    r = scenario.result(scenario.next_good)
    frame = scenario.expected[scenario.next_good]
    assert r.status == "ingested", r.reason
    assert (r.rows, r.rows_duplicate) == (frame.height, 0)
    assert r.batch_id is not None and r.batch_id > max(f.batch_id or 0 for f in scenario.round1.files)


def test_ids_already_ingested_are_dropped_and_counted(scenario: Scenario) -> None:
    r = scenario.result("overlap.parquet")
    assert r.status == "ingested" and r.reason == ""
    assert (r.rows, r.rows_duplicate) == (100, 100)
    assert scenario.query(
        "SELECT rows, rows_duplicate FROM ingest_log WHERE file_name = 'overlap.parquet'"
    ) == [(100, 100)]
    first = scenario.result(scenario.good1[0])
    old_ids = scenario.expected[scenario.good1[0]]["row_id"].tail(100).to_list()
    # the ids that were in keep their first batch, once
    assert scenario.query(
        "SELECT count(*), count(DISTINCT _batch_id), min(_batch_id) FROM raw_deltas WHERE row_id BETWEEN ? AND ?",
        [min(old_ids), max(old_ids)],
    ) == [(100, 1, first.batch_id)]


def test_same_bytes_under_another_name_are_a_duplicate(scenario: Scenario) -> None:
    s = scenario.settings
    for name, original in (
        ("same bytes, new name.parquet", scenario.good1[0]),
        ("again.csv", scenario.good1[1]),
    ):
        dup, first = scenario.result(name), scenario.result(original)
        assert dup.status == "duplicate"
        assert dup.file_hash == first.file_hash and dup.batch_id == first.batch_id
        assert_one_line_reason(
            dup.reason, name, (f"same content as batch {first.batch_id}", "already ingested")
        )
        assert dup.outcomes == []  # known bytes are not read again
        assert (s.paths.archive / name).is_file()
        assert scenario.query("SELECT status, rows FROM ingest_log WHERE file_name = ?", [name]) == [
            ("duplicate", 0)
        ]


def test_bytes_of_a_quarantined_file_are_quarantined_again(scenario: Scenario) -> None:
    r = scenario.result(scenario.quarantined_copy)
    assert r.status == "quarantined"
    assert_one_line_reason(r.reason, scenario.quarantined_copy, ("is not a readable Parquet file",))


def test_a_symlink_is_quarantined_and_not_followed(scenario: Scenario) -> None:
    s = scenario.settings
    for name, target in (("link.parquet", scenario.link_target), ("dangling.csv", None)):
        r = scenario.result(name)
        assert r.status == "quarantined"
        assert_one_line_reason(r.reason, name, ("is a symlink", "never followed"))
        moved = s.paths.quarantine / name
        assert moved.is_symlink()  # the link itself was moved
        assert (s.paths.quarantine / f"{name}.reason.txt").read_text(encoding="utf-8").startswith(r.reason)
        if target is not None:
            assert os.readlink(moved) == str(target)
    assert scenario.link_target.is_file()  # the target is untouched and none of its rows went in
    assert scenario.query("SELECT count(*) FROM raw_deltas WHERE row_id BETWEEN 90000000 AND 90000049") == [
        (0,)
    ]


def test_files_not_ready_and_folders_are_left_alone(scenario: Scenario) -> None:
    landing = scenario.settings.paths.landing
    for name, data in scenario.not_ready.items():
        assert (landing / name).read_bytes() == data
    assert (landing / "folder.parquet" / "inner.parquet").is_file()
    assert (landing / "sub" / "nested.csv").is_file()
    assert (landing / "pipe.csv").exists() and not (landing / "pipe.csv").is_file()
    assert sorted(p.name for p in landing.iterdir()) == sorted(
        [*scenario.not_ready, "folder.parquet", "sub", "pipe.csv"]
    )
    logged = {r[0] for r in scenario.query("SELECT file_name FROM ingest_log")}
    assert not logged & {*scenario.not_ready, "folder.parquet", "inner.parquet", "nested.csv", "pipe.csv"}
    assert scenario.query(
        "SELECT count(*) FROM raw_deltas WHERE row_id >= 91000000 AND row_id < 94000000"
    ) == [(0,)]
