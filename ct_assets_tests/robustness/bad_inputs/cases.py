"""The cases of docs/ingest_policy.md (file, maker, what its one-line reason must name), the scenario they
end in, and what every reason must look like."""

import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ct_assets.config import Settings
from ct_assets.core.ingest.ingest import FileResult, IngestReport
from ct_assets.core.ingest.landing import display_name
from ct_assets.store.warehouse import connect_reader
from ct_assets_tests.robustness.bad_inputs.makers import (
    CHUNK_ROWS,
    T0,
    Maker,
    ancient_event_time,
    corrupted_parquet_footer,
    corrupted_parquet_page,
    duplicate_header_csv,
    duplicate_ids_in_file,
    empty_csv,
    empty_parquet,
    extra_columns,
    fractional_row_id,
    future_event_time,
    good_csv,
    good_parquet,
    header_only_csv,
    label_outside_classes,
    large_id_repeated_across_chunks,
    large_text_in_last_row_csv,
    minus_infinity_csv,
    nan_in_nullable_feature,
    nan_in_nullable_feature_csv,
    nan_in_required_feature,
    not_utf8_csv,
    null_in_required_feature,
    plus_infinity,
    ragged_row_csv,
    renamed_column,
    text_in_numeric_parquet,
    truncated_csv,
    truncated_parquet,
    unclosed_quote_csv,
    unparseable_event_time_csv,
    zero_row_parquet,
)


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


def land_order(landing: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        os.utime(landing / name, (T0 + i, T0 + i), follow_symlinks=False)


def assert_one_line_reason(reason: str, logged: str, fragments: tuple[str, ...]) -> None:
    assert "\n" not in reason and "\r" not in reason, reason
    assert reason.startswith(f"{logged}: "), reason
    for fragment in fragments:
        assert fragment in reason, (fragment, reason)
