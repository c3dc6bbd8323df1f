"""Ingest: good Parquet and CSV files go in unchanged and in landing order, the same bytes under another
name once, rows whose id exists are dropped and counted, bad files are quarantined whole with a one-line
reason, and the ingest log accounts for every file.

Great Expectations costs about a second per validated file, so one landing folder holding every kind of
good and bad file is ingested once for the module, and each test asserts on its outcome."""

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from ct_assets.config import Settings, load_settings
from ct_assets.core.ingest.ingest import FileResult, IngestReport, ingest_landed_files
from ct_assets.core.ingest.quality import first_failure
from ct_assets.store.hashing import row_hash_sql
from ct_assets.store.schema import raw_delta_columns
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets_tests.helpers.data import delta_frame

NOW = datetime(2025, 6, 1, 12, 0, 0)


def churn_frame(first_id: int, n: int, seed: int) -> pl.DataFrame:
    """n rows of the default schema, with ids from first_id, a few null labels, all before NOW."""
    return delta_frame(first_id, n, seed, NOW)


def set_value(frame: pl.DataFrame, column: str, row: int, value: object) -> pl.DataFrame:
    dtype = pl.String if isinstance(value, str) else frame.schema[column]
    return frame.with_columns(frame[column].cast(dtype).scatter(row, value))


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    frame.write_parquet(path)


def write_csv(frame: pl.DataFrame, path: Path) -> None:
    frame.write_csv(path)


def renamed_column(f: pl.DataFrame, p: Path) -> None:
    write_parquet(f.rename({"monthly_spend": "monthly_spending"}), p)


def text_in_numeric(f: pl.DataFrame, p: Path) -> None:
    write_csv(set_value(f, "support_calls", 7, "three"), p)


def null_in_required(f: pl.DataFrame, p: Path) -> None:
    write_parquet(set_value(f, "tenure_months", 4, None), p)


def out_of_range(f: pl.DataFrame, p: Path) -> None:
    write_parquet(set_value(f, "discount_rate", 9, 1.5), p)


def unknown_category(f: pl.DataFrame, p: Path) -> None:
    write_parquet(set_value(f, "region", 2, "mars"), p)


def label_outside_classes(f: pl.DataFrame, p: Path) -> None:
    write_parquet(set_value(f, "label", 5, 2), p)


def duplicate_row_ids(f: pl.DataFrame, p: Path) -> None:
    write_parquet(set_value(f, "row_id", 6, int(f["row_id"][5])), p)


def future_event_time(f: pl.DataFrame, p: Path) -> None:
    write_parquet(set_value(f, "event_time", 8, NOW + timedelta(days=1)), p)


def unparseable_time(f: pl.DataFrame, p: Path) -> None:
    write_csv(set_value(f.with_columns(pl.col("event_time").cast(pl.String)), "event_time", 10, "soon"), p)


def empty_file(f: pl.DataFrame, p: Path) -> None:
    p.write_bytes(b"")


def header_only(f: pl.DataFrame, p: Path) -> None:
    p.write_text(",".join(f.columns) + "\n", encoding="utf-8")


def truncated_parquet(f: pl.DataFrame, p: Path) -> None:
    f.write_parquet(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def not_utf8(f: pl.DataFrame, p: Path) -> None:
    text = f.write_csv()
    assert "north" in text
    p.write_bytes(text.replace("north", "n\u00f6rth", 1).encode("latin-1"))


@dataclass(frozen=True)
class BadCase:
    file: str
    make: Callable[[pl.DataFrame, Path], None]
    fragments: tuple[str, ...]  # what the one-line reason must name (besides the file)
    check: str | None  # the raw_deltas check that failed (None: unreadable, GX never ran)


BAD = [
    BadCase(
        "renamed_column.parquet",
        renamed_column,
        ("'monthly_spend'", "expect_column_to_exist", "missing"),
        "raw_deltas_schema_valid",
    ),
    BadCase(
        "text_in_numeric.csv",
        text_in_numeric,
        ("'support_calls'", "expect_column_values_to_be_in_type_list"),
        "raw_deltas_schema_valid",
    ),
    BadCase(
        "null_in_required.parquet",
        null_in_required,
        ("'tenure_months'", "expect_column_values_to_not_be_null", "1 of 100 rows"),
        "raw_deltas_required_not_null",
    ),
    BadCase(
        "out_of_range.parquet",
        out_of_range,
        ("'discount_rate'", "expect_column_values_to_be_between", "1 of 100 rows", "1.5"),
        "raw_deltas_values_valid",
    ),
    BadCase(
        "unknown_category.parquet",
        unknown_category,
        ("'region'", "expect_column_values_to_be_in_set", "mars"),
        "raw_deltas_values_valid",
    ),
    BadCase(
        "label_outside_classes.parquet",
        label_outside_classes,
        ("'label'", "expect_column_values_to_be_in_set"),
        "raw_deltas_values_valid",
    ),
    BadCase(
        "duplicate_row_ids.parquet",
        duplicate_row_ids,
        ("'row_id'", "expect_column_values_to_be_unique"),
        "raw_deltas_row_ids_unique",
    ),
    BadCase(
        "future_event_time.parquet",
        future_event_time,
        ("'event_time'", "expect_column_values_to_be_between", "in the future"),
        "raw_deltas_values_valid",
    ),
    BadCase(
        "unparseable_time.csv",
        unparseable_time,
        ("'event_time'", "expect_column_values_to_not_be_null"),
        "raw_deltas_required_not_null",
    ),
    BadCase("empty.parquet", empty_file, ("empty",), None),
    BadCase("header_only.csv", header_only, ("no data rows",), None),
    BadCase("truncated.parquet", truncated_parquet, ("not a readable Parquet",), None),
    BadCase("not_utf8.csv", not_utf8, ("not a readable CSV", "UTF-8"), None),
]


@dataclass
class Scenario:
    settings: Settings
    first: IngestReport  # the landing folder of every kind of file, ingested once
    second: IngestReport  # later: good_a's bytes again, under another name
    frames: dict[str, pl.DataFrame]  # the good files' rows
    landed: list[str]  # every file name that landed, in both rounds

    def result(self, name: str) -> FileResult:
        found = [f for f in self.first.files + self.second.files if f.name == name]
        assert len(found) == 1, (name, found)
        return found[0]

    def query(self, sql: str) -> list[tuple]:
        with connect_reader(self.settings) as con:
            return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    root = tmp_path_factory.mktemp("ingest")
    config = root / "ct.toml"
    config.write_text("[retrain]\nmin_new_rows = 1000\n", encoding="utf-8")
    settings = load_settings(config, cwd=root)
    init_warehouse(settings)
    landing = settings.paths.landing

    frames = {
        "good_a.parquet": churn_frame(1, 100, seed=1),
        "good_b.csv": churn_frame(101, 100, seed=2),
        "overlap.parquet": churn_frame(151, 100, seed=3),  # ids 151..200 are already in good_b
    }
    mtime = 1_700_000_000.0
    order = ["good_a.parquet", "good_b.csv", "copy_of_a.parquet", "overlap.parquet"]
    write_parquet(frames["good_a.parquet"], landing / "good_a.parquet")
    write_csv(frames["good_b.csv"], landing / "good_b.csv")
    shutil.copyfile(landing / "good_a.parquet", landing / "copy_of_a.parquet")
    write_parquet(frames["overlap.parquet"], landing / "overlap.parquet")
    for i, case in enumerate(BAD):
        case.make(churn_frame(1001 + 100 * i, 100, seed=10 + i), landing / case.file)
        order.append(case.file)
    for i, name in enumerate(order):
        os.utime(landing / name, (mtime + i, mtime + i))
    first = ingest_landed_files(settings, run_id="run-1", now=NOW)

    shutil.copyfile(settings.paths.archive / "good_a.parquet", landing / "again.parquet")
    second = ingest_landed_files(settings, run_id="run-2", now=NOW)
    return Scenario(settings, first, second, frames, [*order, "again.parquet"])


def stored_frame(frame: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """What the warehouse should hold for a good frame: NaN becomes null."""
    return frame.select(n for n, _ in raw_delta_columns(settings)).with_columns(
        pl.selectors.float().fill_nan(None)
    )


def test_every_file_is_handled_in_landing_order(scenario: Scenario) -> None:
    assert [f.name for f in scenario.first.files] == scenario.landed[:-1]
    assert [f.name for f in scenario.second.files] == ["again.parquet"]
    assert list(scenario.settings.paths.landing.iterdir()) == []


def test_good_parquet_and_csv_files_go_in_unchanged(scenario: Scenario) -> None:
    s = scenario.settings
    for name, first_id in (("good_a.parquet", 1), ("good_b.csv", 101)):
        r = scenario.result(name)
        frame = scenario.frames[name]
        assert r.status == "ingested", r.reason
        assert r.reason == ""
        assert r.rows == 100
        assert r.rows_duplicate == 0
        assert r.rows_labelled == frame["label"].count() == 98
        assert r.min_event_time == frame["event_time"].min()
        assert r.max_event_time == frame["event_time"].max()
        assert (s.paths.archive / name).is_file()
        cols = ", ".join(f'"{n}"' for n, _ in raw_delta_columns(s))
        with connect_reader(s) as con:
            stored = con.sql(
                f"SELECT {cols} FROM raw_deltas WHERE _batch_id = {r.batch_id} ORDER BY row_id"
            ).pl()
        assert stored["row_id"].to_list() == list(range(first_id, first_id + 100))
        assert stored.equals(stored_frame(frame, s), null_equal=True), name


def test_same_bytes_under_another_name_are_ingested_once(scenario: Scenario) -> None:
    a = scenario.result("good_a.parquet")
    for name in ("copy_of_a.parquet", "again.parquet"):
        dup = scenario.result(name)
        assert dup.status == "duplicate"
        assert dup.file_hash == a.file_hash
        assert dup.batch_id == a.batch_id
        assert dup.reason.startswith(f"{name}: ")
        assert "already ingested" in dup.reason
        assert (scenario.settings.paths.archive / name).is_file()
    assert scenario.query("SELECT count(*) FROM raw_deltas WHERE row_id BETWEEN 1 AND 100") == [(100,)]
    assert scenario.query("SELECT count(DISTINCT _batch_id) FROM raw_deltas WHERE row_id <= 100") == [(1,)]


def test_rows_whose_id_exists_are_dropped_and_counted(scenario: Scenario) -> None:
    r = scenario.result("overlap.parquet")
    assert r.status == "ingested"
    assert r.rows == 50
    assert r.rows_duplicate == 50
    # ids 151..200 keep the values that came first (good_b), ids 201..250 come from overlap
    b = scenario.result("good_b.csv")
    assert scenario.query(
        "SELECT min(row_id), max(row_id), count(*) FROM raw_deltas WHERE _batch_id = " + str(r.batch_id)
    ) == [(201, 250, 50)]
    assert scenario.query("SELECT count(*) FROM raw_deltas WHERE row_id BETWEEN 151 AND 200") == [(50,)]
    assert scenario.query(
        f"SELECT count(*) FROM raw_deltas WHERE row_id BETWEEN 151 AND 200 AND _batch_id <> {b.batch_id}"
    ) == [(0,)]
    assert scenario.query(
        "SELECT rows, rows_duplicate FROM ingest_log WHERE file_name = 'overlap.parquet'"
    ) == [(50, 50)]


@pytest.mark.parametrize("case", BAD, ids=[c.file for c in BAD])
def test_bad_file_is_quarantined_whole_with_a_reason(scenario: Scenario, case: BadCase) -> None:
    r = scenario.result(case.file)
    assert r.status == "quarantined"
    assert r.rows == 0
    assert r.batch_id is None
    assert "\n" not in r.reason
    assert r.reason.startswith(f"{case.file}: ")
    for fragment in case.fragments:
        assert fragment in r.reason, r.reason
    if case.check is None:
        assert r.outcomes == []
    else:
        failed = first_failure(r.outcomes)
        assert failed is not None
        assert failed.check == case.check

    quarantine = scenario.settings.paths.quarantine
    assert (quarantine / case.file).is_file()
    assert r.stored_as == str(quarantine / case.file)
    reason_file = quarantine / f"{case.file}.reason.txt"
    assert reason_file.read_text(encoding="utf-8").splitlines()[0] == r.reason
    assert not (scenario.settings.paths.archive / case.file).exists()
    assert scenario.query(f"SELECT reason, rows FROM ingest_log WHERE file_name = '{case.file}'") == [
        (r.reason, 0)
    ]


def test_quarantined_rows_never_reach_the_warehouse(scenario: Scenario) -> None:
    # every bad file's ids are above 1000; good ones are below
    assert scenario.query("SELECT count(*) FROM raw_deltas WHERE row_id > 1000") == [(0,)]


def test_ingest_log_accounts_for_every_file(scenario: Scenario) -> None:
    rows = scenario.query("SELECT file_name, status, run_id FROM ingest_log ORDER BY entry_id")
    assert [r[0] for r in rows] == scenario.landed
    by_status: dict[str, set[str]] = {}
    for name, status, _ in rows:
        by_status.setdefault(status, set()).add(name)
    assert by_status == {
        "ingested": {"good_a.parquet", "good_b.csv", "overlap.parquet"},
        "duplicate": {"copy_of_a.parquet", "again.parquet"},
        "quarantined": {c.file for c in BAD},
    }
    assert {r[2] for r in rows[:-1]} == {"run-1"}
    assert rows[-1][2] == "run-2"
    handled = sorted(p.name for p in scenario.settings.paths.archive.iterdir())
    handled += sorted(
        p.name for p in scenario.settings.paths.quarantine.iterdir() if not p.name.endswith(".reason.txt")
    )
    assert sorted(handled) == sorted(scenario.landed)


def test_warehouse_row_count_equals_good_rows(scenario: Scenario) -> None:
    ingested = [f for f in scenario.first.files + scenario.second.files if f.status == "ingested"]
    assert scenario.first.rows_appended == sum(f.rows for f in ingested) == 250
    assert scenario.second.rows_appended == 0
    assert scenario.query("SELECT count(*), count(DISTINCT row_id) FROM raw_deltas") == [(250, 250)]
    assert scenario.query(
        "SELECT sum(rows), sum(rows_labelled) FROM ingest_log WHERE status = 'ingested'"
    ) == scenario.query("SELECT count(*), count(label) FROM raw_deltas")
    batches = scenario.query("SELECT DISTINCT _batch_id FROM raw_deltas ORDER BY 1")
    assert [b[0] for b in batches] == sorted(f.batch_id for f in ingested)


def test_stored_row_hashes_match_the_stored_values(scenario: Scenario) -> None:
    cols = [n for n, _ in raw_delta_columns(scenario.settings)]
    assert scenario.query(f"SELECT count(*) FROM raw_deltas WHERE _row_hash <> {row_hash_sql(cols)}") == [
        (0,)
    ]


def test_data_hash_is_recorded_for_ingested_files(scenario: Scenario) -> None:
    rows = scenario.query("SELECT status, data_hash FROM ingest_log")
    assert all((h is not None) == (status == "ingested") for status, h in rows)
    hashes = [h for status, h in rows if status == "ingested"]
    assert len(set(hashes)) == len(hashes) == 3
