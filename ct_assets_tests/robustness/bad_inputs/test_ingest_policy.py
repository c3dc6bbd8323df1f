"""Every row of docs/ingest_policy.md, proven: each kind of bad input lands beside good files, goes through
the real ingest (Great Expectations, a DuckDB warehouse in a temporary folder), and ends as the policy
says, while the good files beside it go in, the warehouse holds exactly the good rows, the ingest log
has one row per file, and the next good file still goes in.

Great Expectations costs about a second per validated file, so one landing folder holding every kind of
file is ingested once for the module (round 1), then a second round lands the next good file, rows whose
ids were already ingested, and bytes seen before; each test asserts on that outcome. The few cases that
need another configuration use the conftest fixtures and a warehouse of their own.
"""

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from ct_assets.config import Settings, load_settings
from ct_assets.core.ingest.ingest import FileResult, IngestReport, ingest_landed_files
from ct_assets.core.ingest.landing import display_name
from ct_assets.errors import ConfigError
from ct_assets.store.schema import raw_delta_columns
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets.tools.simulator import SimulationOptions, generate_rows, simulate

NOW = datetime(2026, 3, 1, 12, 0, 0)
CHUNK_ROWS = 100_000  # [ingest] chunk_rows of the module's configuration
LARGE_ROWS = 300_000  # the large good file: three chunks
T0 = 1_700_000_000.0  # landing times (mtimes), so files are handled in a known order


def delta(first_id: int, n: int, seed: int, *, days_ago: float = 2.0) -> pl.DataFrame:
    """n rows of the default schema (the simulator's features and labels), ids from first_id."""
    rng = np.random.default_rng(seed)
    data = generate_rows(rng, n, SimulationOptions(batches=1, rows=n, seed=seed))
    label = data.pop("label")
    start = NOW - timedelta(days=days_ago)
    return pl.DataFrame(
        {
            "event_time": [start + timedelta(seconds=i) for i in range(n)],
            "row_id": np.arange(first_id, first_id + n, dtype=np.int64),
            **data,
            "label": label,
        }
    ).with_columns(pl.col("event_time").cast(pl.Datetime("us")))


def put(frame: pl.DataFrame, column: str, row: int, value: object) -> pl.DataFrame:
    """The frame with one value replaced (the column becomes text when the value is text)."""
    dtype = pl.String if isinstance(value, str) else frame.schema[column]
    return frame.with_columns(frame[column].cast(dtype).scatter(row, value))


def stored(frame: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """What the warehouse should hold for a frame that goes in: configured columns, NaN as null."""
    return frame.select(n for n, _ in raw_delta_columns(settings)).with_columns(
        pl.selectors.float().fill_nan(None)
    )


def flip_bytes(path: Path, start: int, count: int) -> None:
    data = bytearray(path.read_bytes())
    for i in range(start, start + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


# Each maker writes one file from a frame of 200 good rows and returns the rows the warehouse should
# then hold, or None when the file must be quarantined whole.
Maker = Callable[[pl.DataFrame, Path], pl.DataFrame | None]


def renamed_column(f: pl.DataFrame, p: Path) -> None:
    f.rename({"monthly_spend": "monthly_spending"}).write_csv(p)


def extra_columns(f: pl.DataFrame, p: Path) -> pl.DataFrame:
    f.with_columns(pl.lit("free text").alias("notes"), pl.lit(7).alias("_batch_id")).write_parquet(p)
    return f


def text_in_numeric_parquet(f: pl.DataFrame, p: Path) -> None:
    f.with_columns(pl.col("tenure_months").cast(pl.String)).write_parquet(p)


def null_in_required_feature(f: pl.DataFrame, p: Path) -> None:
    put(f, "tenure_months", 4, None).write_parquet(p)


def unparseable_event_time_csv(f: pl.DataFrame, p: Path) -> None:
    put(f.with_columns(pl.col("event_time").cast(pl.String)), "event_time", 10, "yesterday").write_csv(p)


def nan_in_required_feature(f: pl.DataFrame, p: Path) -> None:
    put(f, "monthly_spend", 3, float("nan")).write_parquet(p)


def nan_in_nullable_feature(f: pl.DataFrame, p: Path) -> pl.DataFrame:
    """NaN in features that may be null, and null labels: stored as nulls, labels counted."""
    out = put(put(f, "usage_hours", 0, float("nan")), "satisfaction", 1, float("nan"))
    out = out.with_columns(out["label"].scatter([0, 1, 2], None))
    out.write_parquet(p)
    return out


def nan_in_nullable_feature_csv(f: pl.DataFrame, p: Path) -> pl.DataFrame:
    out = put(f, "usage_hours", 5, float("nan"))
    text = out.write_csv()
    assert "NaN" in text
    p.write_text(text, encoding="utf-8")
    return out


def plus_infinity(f: pl.DataFrame, p: Path) -> None:
    put(f, "monthly_spend", 8, float("inf")).write_parquet(p)


def minus_infinity_csv(f: pl.DataFrame, p: Path) -> None:
    text = put(f, "usage_hours", 6, float("-inf")).write_csv()
    assert "-inf" in text
    p.write_text(text, encoding="utf-8")


def label_outside_classes(f: pl.DataFrame, p: Path) -> None:
    put(f, "label", 5, 2).write_parquet(p)


def duplicate_ids_in_file(f: pl.DataFrame, p: Path) -> None:
    put(f, "row_id", 6, int(f["row_id"][5])).write_parquet(p)


def fractional_row_id(f: pl.DataFrame, p: Path) -> None:
    f.with_columns(f["row_id"].cast(pl.Float64).scatter(7, 0.5 + float(f["row_id"][7]))).write_parquet(p)


def future_event_time(f: pl.DataFrame, p: Path) -> None:
    put(f, "event_time", 8, NOW + timedelta(days=1)).write_parquet(p)


def ancient_event_time(f: pl.DataFrame, p: Path) -> None:
    put(f, "event_time", 8, NOW - timedelta(days=4000)).write_parquet(p)


def empty_parquet(f: pl.DataFrame, p: Path) -> None:
    p.write_bytes(b"")


def empty_csv(f: pl.DataFrame, p: Path) -> None:
    p.write_bytes(b"")


def header_only_csv(f: pl.DataFrame, p: Path) -> None:
    p.write_text(",".join(f.columns) + "\n", encoding="utf-8")


def zero_row_parquet(f: pl.DataFrame, p: Path) -> None:
    f.head(0).write_parquet(p)


def truncated_parquet(f: pl.DataFrame, p: Path) -> None:
    f.write_parquet(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def corrupted_parquet_footer(f: pl.DataFrame, p: Path) -> None:
    f.write_parquet(p)
    flip_bytes(p, p.stat().st_size - 200, 150)  # inside the footer's metadata


def corrupted_parquet_page(f: pl.DataFrame, p: Path) -> None:
    # A producer that writes page checksums: damage inside a data page is then detected on read.
    pq.write_table(f.to_arrow(), p, write_page_checksum=True, compression="none")
    flip_bytes(p, 200, 32)


def not_utf8_csv(f: pl.DataFrame, p: Path) -> None:
    text = f.write_csv()
    p.write_bytes(text.replace("north", "n\u00f6rth").encode("latin-1"))


def truncated_csv(f: pl.DataFrame, p: Path) -> None:
    data = f.write_csv().encode("utf-8")
    p.write_bytes(data[: len(data) - 7])  # cut inside the last row


def ragged_row_csv(f: pl.DataFrame, p: Path) -> None:
    lines = f.write_csv().splitlines()
    lines[40] = lines[40].rsplit(",", 1)[0]  # a row one field short (its label missing)
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")


def unclosed_quote_csv(f: pl.DataFrame, p: Path) -> None:
    """An extra text column whose quote opens in data row 50 and never closes: the rest of the file
    would be swallowed into one value, and its rows lost, if the file were read as it parses."""
    lines = f.with_columns(pl.lit("ok").alias("comment")).write_csv().splitlines()
    lines[50] = lines[50].removesuffix(",ok") + ',"oops'
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")


def duplicate_header_csv(f: pl.DataFrame, p: Path) -> None:
    f.with_columns(pl.col("region").alias("region_2")).write_csv(p)
    text = p.read_text(encoding="utf-8")
    p.write_text(text.replace("region_2", "region", 1), encoding="utf-8")


def good_parquet(f: pl.DataFrame, p: Path) -> pl.DataFrame:
    f.write_parquet(p)
    return f


def good_csv(f: pl.DataFrame, p: Path) -> pl.DataFrame:
    f.write_csv(p)
    return f


def large_text_in_last_row_csv(f: pl.DataFrame, p: Path) -> None:
    big = delta(int(f["row_id"][0]), CHUNK_ROWS + 1, seed=77)
    put(big, "support_calls", CHUNK_ROWS, "three").write_csv(p)


def large_id_repeated_across_chunks(f: pl.DataFrame, p: Path) -> None:
    big = delta(int(f["row_id"][0]), CHUNK_ROWS + 1, seed=78)
    put(big, "row_id", CHUNK_ROWS, int(big["row_id"][0])).write_parquet(p)


@dataclass(frozen=True)
class Case:
    id: str
    file: str  # the name it lands under
    make: Maker
    fragments: tuple[str, ...]  # what the one-line reason must name, besides the file

    @property
    def logged(self) -> str:
        """The name as reasons and the ingest log show it (one printable line)."""
        return display_name(self.file)


LATIN1_NAME = os.fsdecode(b"caf\xe9 latin-1.csv")  # a name that is not UTF-8

CASES = [
    Case(
        "renamed column",
        "renamed_column.csv",
        renamed_column,
        ("'monthly_spend'", "expect_column_to_exist", "missing"),
    ),
    Case("extra columns", "extra_columns.parquet", extra_columns, ("'notes'", "'_batch_id'", "not stored")),
    Case(
        "text in numeric (parquet)",
        "text_in_numeric.parquet",
        text_in_numeric_parquet,
        ("'tenure_months'", "expect_column_values_to_be_in_type_list", "str"),
    ),
    Case(
        "null in required feature",
        "null_feature.parquet",
        null_in_required_feature,
        ("'tenure_months'", "expect_column_values_to_not_be_null", "1 of 200 rows"),
    ),
    Case(
        "unparseable event time (csv)",
        "unparseable_time.csv",
        unparseable_event_time_csv,
        ("'event_time'", "expect_column_values_to_not_be_null", "1 of 200 rows"),
    ),
    Case(
        "NaN in required feature",
        "nan_required.parquet",
        nan_in_required_feature,
        ("'monthly_spend'", "expect_column_values_to_not_be_null", "1 of 200 rows"),
    ),
    Case("NaN in nullable features, null labels", "nan_nullable.parquet", nan_in_nullable_feature, ()),
    Case("NaN in nullable feature (csv)", "nan_nullable.csv", nan_in_nullable_feature_csv, ()),
    Case(
        "+infinity",
        "plus_inf.parquet",
        plus_infinity,
        ("'monthly_spend'", "expect_column_values_to_be_between", "1 of 200 rows", "inf"),
    ),
    Case(
        "-infinity (csv)",
        "minus_inf.csv",
        minus_infinity_csv,
        ("'usage_hours'", "expect_column_values_to_be_between", "-inf"),
    ),
    Case(
        "label outside classes",
        "label_2.parquet",
        label_outside_classes,
        ("'label'", "expect_column_values_to_be_in_set", "1 of 200 rows"),
    ),
    Case(
        "duplicate ids in file",
        "duplicate_ids.parquet",
        duplicate_ids_in_file,
        ("'row_id'", "expect_column_values_to_be_unique", "2 of 200 rows"),
    ),
    Case(
        "fractional row id",
        "fractional_id.parquet",
        fractional_row_id,
        ("'row_id'", "cannot be stored as BIGINT", "not whole numbers"),
    ),
    Case(
        "event time in the future",
        "future.parquet",
        future_event_time,
        ("'event_time'", "expect_column_values_to_be_between", "in the future"),
    ),
    Case(
        "event time far in the past",
        "ancient.parquet",
        ancient_event_time,
        ("'event_time'", "expect_column_values_to_be_between", "days old", "1 of 200 rows"),
    ),
    Case("empty parquet", "empty.parquet", empty_parquet, ("is empty (0 bytes)",)),
    Case("empty csv", "empty.csv", empty_csv, ("is empty (0 bytes)",)),
    Case("header-only csv", "header_only.csv", header_only_csv, ("has no data rows",)),
    Case("zero-row parquet", "zero_rows.parquet", zero_row_parquet, ("has no data rows",)),
    Case("truncated parquet", "truncated.parquet", truncated_parquet, ("is not a readable Parquet file",)),
    Case(
        "corrupted parquet footer",
        "corrupt_footer.parquet",
        corrupted_parquet_footer,
        ("is not a readable Parquet file",),
    ),
    Case(
        "corrupted parquet page",
        "corrupt_page.parquet",
        corrupted_parquet_page,
        ("is not a readable Parquet file", "checksum"),
    ),
    Case("non-UTF-8 csv", "latin1.csv", not_utf8_csv, ("is not a readable CSV (UTF-8) file", "UTF8")),
    Case("truncated csv", "truncated.csv", truncated_csv, ("does not end with a line break", "truncated")),
    Case(
        "ragged row csv",
        "ragged.csv",
        ragged_row_csv,
        ("is not a readable CSV (UTF-8) file", "Expected 12 columns, got 11"),
    ),
    Case(
        "unclosed quote csv",
        "unclosed_quote.csv",
        unclosed_quote_csv,
        ("column 'comment'", "line break inside a value in data row 50", "unclosed quote"),
    ),
    Case(
        "duplicate header csv",
        "duplicate_header.csv",
        duplicate_header_csv,
        ("two columns named 'region'",),
    ),
    Case("name with spaces", "name with spaces.parquet", good_parquet, ()),
    Case("unicode name", "ünïcødé данные.csv", good_csv, ()),
    Case("leading dash", "-rf.parquet", empty_parquet, ("is empty",)),
    Case("name with ..", "a..b.parquet", empty_parquet, ("is empty",)),
    Case("newline in name", "new\nline.csv", header_only_csv, ("has no data rows",)),
    Case("non-UTF-8 name", LATIN1_NAME, empty_csv, ("is empty",)),
    Case(
        "large csv, text in its last row",
        "large_bad_tail.csv",
        large_text_in_last_row_csv,
        ("'support_calls'", "expect_column_values_to_be_in_type_list", "observed str"),
    ),
    Case(
        "large parquet, id repeated across chunks",
        "large_repeated_id.parquet",
        large_id_repeated_across_chunks,
        ("'row_id'", "expect_column_values_to_be_unique", f"2 of {CHUNK_ROWS + 1} rows"),
    ),
]
CASE_ROWS = 200
CASE_ID_BASE = 10_000_000  # case i holds ids from CASE_ID_BASE + i * 1_000_000; good files' ids are below


def case_first_id(i: int) -> int:
    return CASE_ID_BASE + i * 1_000_000


@dataclass
class Scenario:
    settings: Settings
    round1: IngestReport
    round2: IngestReport
    expected: dict[str, pl.DataFrame]  # logged name -> rows the warehouse must hold from that file
    logged1: list[str]  # every ready entry of round 1, in landing order, as logged
    logged2: list[str]
    good1: list[str]  # the simulator's files of round 1
    next_good: str  # the simulator's file of round 2
    link_target: Path
    not_ready: dict[str, bytes]  # name -> bytes of files that must be left alone
    quarantined_copy: str  # the bytes of a quarantined file, landed again

    def result(self, logged: str) -> FileResult:
        found = [f for f in self.round1.files + self.round2.files if f.name == logged]
        assert len(found) == 1, (logged, found)
        return found[0]

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with connect_reader(self.settings) as con:
            return con.execute(sql, params or []).fetchall()


def _land_order(landing: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        os.utime(landing / name, (T0 + i, T0 + i), follow_symlinks=False)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    root = tmp_path_factory.mktemp("bad_inputs")
    config = root / "ct.toml"
    config.write_text(
        f"[retrain]\nmin_new_rows = 1000\n\n[ingest]\nchunk_rows = {CHUNK_ROWS}\n", encoding="utf-8"
    )
    settings = load_settings(config, cwd=root)
    init_warehouse(settings)
    landing = settings.paths.landing
    expected: dict[str, pl.DataFrame] = {}

    # Good files, written by the simulator: a Parquet file, a CSV file and a large Parquet file.
    good = simulate(settings, SimulationOptions(batches=1, rows=300, seed=1), now=NOW - timedelta(hours=3))
    good += simulate(settings, SimulationOptions(batches=1, rows=300, seed=2, file_format="csv"), now=NOW)
    good += simulate(settings, SimulationOptions(batches=1, rows=LARGE_ROWS, seed=3), now=NOW)
    for path in good:
        frame = (
            pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, try_parse_dates=True)
        )
        expected[path.name] = frame.with_columns(pl.col("event_time").cast(pl.Datetime("us")))
    order = [p.name for p in good]
    shutil.copyfile(good[0], landing / "same bytes, new name.parquet")  # a duplicate in the same run
    order.append("same bytes, new name.parquet")

    for i, case in enumerate(CASES):
        rows = case.make(delta(case_first_id(i), CASE_ROWS, seed=100 + i), landing / case.file)
        if rows is not None:
            expected[case.logged] = rows
        order.append(case.file)

    # A symlink with a ready name (to a good file outside the landing folder) and a dangling one.
    outside = root / "outside"
    outside.mkdir()
    link_target = outside / "target.parquet"
    delta(90_000_000, 50, seed=9).write_parquet(link_target)
    (landing / "link.parquet").symlink_to(link_target)
    (landing / "dangling.csv").symlink_to(outside / "missing.csv")
    order += ["link.parquet", "dangling.csv"]
    _land_order(landing, order)

    # Left alone: files still being written, a directory with a ready name, a subfolder, a FIFO.
    not_ready: dict[str, bytes] = {}
    for name in (".hidden.parquet", "in_progress.parquet.part", "in_progress.csv.tmp", "notes.txt"):
        delta(91_000_000, 20, seed=10).write_parquet(landing / name)
        not_ready[name] = (landing / name).read_bytes()
    (landing / "folder.parquet").mkdir()
    delta(92_000_000, 20, seed=11).write_parquet(landing / "folder.parquet" / "inner.parquet")
    (landing / "sub").mkdir()
    delta(93_000_000, 20, seed=12).write_csv(landing / "sub" / "nested.csv")
    os.mkfifo(landing / "pipe.csv")

    round1 = ingest_landed_files(settings, run_id="round-1", now=NOW)

    # Round 2: the next good file, rows whose ids are already in, the same bytes again, and the bytes
    # of a quarantined file again.
    next_good = simulate(settings, SimulationOptions(batches=1, rows=300, seed=4), now=NOW)[0]
    expected[next_good.name] = pl.read_parquet(next_good)
    first = expected[good[0].name]
    overlap = pl.concat([first.tail(100), delta(94_000_000, 100, seed=13).select(first.columns)])
    overlap.write_parquet(landing / "overlap.parquet")
    expected["overlap.parquet"] = overlap.tail(100)
    shutil.copyfile(settings.paths.archive / good[1].name, landing / "again.csv")
    shutil.copyfile(settings.paths.quarantine / "truncated.parquet", landing / "truncated again.parquet")
    order2 = [next_good.name, "overlap.parquet", "again.csv", "truncated again.parquet"]
    _land_order(landing, order2)
    round2 = ingest_landed_files(settings, run_id="round-2", now=NOW + timedelta(minutes=5))

    return Scenario(
        settings=settings,
        round1=round1,
        round2=round2,
        expected=expected,
        logged1=[display_name(n) for n in order],
        logged2=order2,
        good1=[p.name for p in good],
        next_good=next_good.name,
        link_target=link_target,
        not_ready=not_ready,
        quarantined_copy="truncated again.parquet",
    )


def assert_one_line_reason(reason: str, logged: str, fragments: tuple[str, ...]) -> None:
    assert "\n" not in reason and "\r" not in reason, reason
    assert reason.startswith(f"{logged}: "), reason
    for fragment in fragments:
        assert fragment in reason, (fragment, reason)


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
    _land_order(landing, [good.name, "inf.parquet", "ancient.parquet"])

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
