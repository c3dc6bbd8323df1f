"""The Great Expectations suite on one frame: a good delta passes every expectation, one per configured
column exists, and an outcome describes itself on one line."""

from datetime import datetime

from ct_assets.config import Settings
from ct_assets.core.ingest.quality import CHECKS, Outcome, first_failure, validate_delta
from ct_assets.core.ingest.reader import normalize
from ct_assets_tests.helpers.data import delta_frame

NOW = datetime(2025, 6, 1, 12, 0, 0)


def test_good_frame_passes_every_expectation(settings: Settings) -> None:
    frame = normalize(delta_frame(5000, 50, seed=99, now=NOW), settings)
    outcomes = validate_delta(frame, settings, NOW)
    assert first_failure(outcomes) is None
    assert {o.check for o in outcomes} == set(CHECKS)
    # one existence expectation per configured column
    exists = {o.column for o in outcomes if o.expectation == "expect_column_to_exist"}
    assert exists == set(settings.stored_columns)


def test_outcome_describe_is_one_line() -> None:
    o = Outcome("raw_deltas_values_valid", "expect_column_values_to_be_between", "x", False, "e.g. 7", 2, 10)
    assert (
        o.describe() == "column 'x' fails expect_column_values_to_be_between (2 of 10 rows; observed e.g. 7)"
    )
    bare = Outcome("raw_deltas_schema_valid", "expect_column_to_exist", "y", False, "", None, None)
    assert bare.describe() == "column 'y' fails expect_column_to_exist"
