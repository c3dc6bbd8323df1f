"""Schema evolution (issue 13, point 2): a feature added to the config after data exists becomes a column
(older rows hold NULL), a removed one stays unused, and every batch keeps hashing over the columns it was
stored with; what the warehouse cannot follow is refused in one line naming the column and the way out."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.errors import ConfigError
from ct_assets.store.evolution import batch_hash_sql, batches_lacking, user_columns
from ct_assets.store.schema import SCHEMA_VERSION
from ct_assets.store.warehouse import connect_reader, connect_writer, init_warehouse, transaction
from ct_assets_tests.helpers.config import default_tables
from ct_assets_tests.helpers.data import delta_frame

NOW = datetime(2025, 6, 1, 12, 0, 0)
TENURE_YEARS = {"kind": "numeric", "min": 0, "max": 60}


def features(**changes: Any) -> dict[str, Any]:
    """The default [features] with some replaced (a value of None removes the feature)."""
    out = dict(default_tables()["features"])
    for name, spec in changes.items():
        if spec is None:
            out.pop(name)
        else:
            out[name] = spec
    return out


def land(settings: Settings, frame: pl.DataFrame, name: str) -> None:
    frame.write_parquet(settings.paths.landing / name)
    (result,) = ingest_landed_files(settings, now=NOW).files
    assert result.status == "ingested", result.reason


def hashes_hold(settings: Settings) -> None:
    """Every stored row hash and content hash equals the one recomputed from its values over its batch's
    recorded columns."""
    with connect_reader(settings) as con:
        row, content = batch_hash_sql(con, "row"), batch_hash_sql(con, "content")
        bad = con.execute(
            f"SELECT count(*) FILTER (WHERE _row_hash <> {row}), count(*) FILTER (WHERE _content_hash <> {content}), "
            "count(*) FROM raw_deltas"
        ).fetchall()[0]
    assert bad[:2] == (0, 0) and bad[2] > 0, bad


@pytest.fixture
def stored(make_settings: Callable[..., Settings]) -> Settings:
    settings = make_settings()
    init_warehouse(settings)
    land(settings, delta_frame(1, 30, seed=1, now=NOW), "first.parquet")
    return settings


def test_an_optional_feature_added_after_data_exists_becomes_a_column(
    stored: Settings, make_settings: Callable[..., Settings]
) -> None:
    added = make_settings(features=features(tenure_years=TENURE_YEARS))
    with connect_reader(added) as con:  # a reader neither adds nor refuses
        assert "tenure_years" not in dict(user_columns(con))
    with connect_writer(added) as con:  # the first writer adds it
        assert dict(user_columns(con))["tenure_years"] == "DOUBLE"
        assert dict(user_columns(con, "golden_rows"))["tenure_years"] == "DOUBLE"
        assert con.execute("SELECT change, column_name, sql_type FROM schema_changes").fetchall() == [
            ("column_added", "tenure_years", "DOUBLE")
        ]
    newer = delta_frame(31, 30, seed=2, now=NOW).with_columns(
        (pl.col("tenure_months") / 12).alias("tenure_years")
    )
    land(added, newer, "second.parquet")
    with connect_reader(added) as con:
        counts = con.execute(
            "SELECT _batch_id, count(tenure_years) FROM raw_deltas GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert counts == [(1, 0), (2, 30)]  # older rows hold nulls
        assert batches_lacking(con, ["tenure_years"]) == [1]
    hashes_hold(added)
    # The files landed before are still valid: a file without the new column is not (it is configured).
    with pytest.raises(AssertionError, match="tenure_years"):
        land(added, delta_frame(61, 30, seed=3, now=NOW), "old_shape.parquet")


def test_a_removed_feature_stays_as_an_unused_column(
    stored: Settings, make_settings: Callable[..., Settings]
) -> None:
    removed = make_settings(features=features(satisfaction=None))
    land(removed, delta_frame(31, 30, seed=2, now=NOW).drop("satisfaction"), "second.parquet")
    with connect_reader(removed) as con:
        assert "satisfaction" in dict(user_columns(con))
        assert con.execute("SELECT change, column_name FROM schema_changes").fetchall() == [
            ("feature_removed", "satisfaction")
        ]
        assert batches_lacking(con, ["satisfaction"]) == [2]
    hashes_hold(removed)
    back = make_settings()  # and back again: the column was there all along
    with connect_writer(back) as con:
        assert con.execute("SELECT change, column_name FROM schema_changes ORDER BY change_id").fetchall()[
            -1
        ] == (
            "feature_added",
            "satisfaction",
        )


REFUSED = {
    "a new required feature": (
        {"features": features(tenure_years={**TENURE_YEARS, "required": True})},
        "new required feature 'tenure_years' cannot be added: the warehouse already holds 30 rows without it; "
        "add it with required = false",
    ),
    "a feature's kind": (
        {"features": features(plan={"kind": "numeric"})},
        "feature 'plan' is numeric in the config but categorical (VARCHAR) in the warehouse",
    ),
    "the label renamed": (
        {"columns": {"label": "churned"}},
        "[columns] label is 'churned' but the warehouse's label column is 'label'",
    ),
    "the event time renamed": (
        {"columns": {"event_time": "ts"}},
        "[columns] event_time is 'ts' but the warehouse's event_time column is 'event_time'",
    ),
    "the label's type": (
        {"columns": {"label_classes": ["no", "yes"]}},
        "column 'label' is stored as BIGINT in the warehouse but the config makes it VARCHAR",
    ),
}


@pytest.mark.parametrize("change", sorted(REFUSED))
def test_what_the_warehouse_cannot_follow_is_refused_in_one_line(
    stored: Settings, make_settings: Callable[..., Settings], change: str
) -> None:
    tables, expected = REFUSED[change]
    changed = make_settings(**tables)
    for connect in (connect_writer, connect_reader):
        with pytest.raises(ConfigError) as err, connect(changed):
            pass
        text = str(err.value)
        assert expected in text
        assert "\n" not in text and text.endswith("or point [paths] warehouse at a new file")
    with connect_reader(stored) as con:
        assert [n for n, _ in user_columns(con)] == stored.stored_columns  # nothing was changed


def test_a_required_feature_may_be_added_while_the_warehouse_is_empty(
    make_settings: Callable[..., Settings],
) -> None:
    init_warehouse(make_settings())
    required = make_settings(features=features(tenure_years={**TENURE_YEARS, "required": True}))
    init_warehouse(required)
    with connect_reader(required) as con:
        assert "tenure_years" in dict(user_columns(con))


def test_init_upgrades_a_schema_4_warehouse_recording_the_columns_of_its_batches(stored: Settings) -> None:
    with connect_writer(stored) as con, transaction(con):
        con.execute("UPDATE ingest_log SET row_columns = NULL, content_columns = NULL")
        con.execute("DELETE FROM meta WHERE key IN ('roles', 'features')")
        con.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    init_warehouse(stored)
    with connect_reader(stored) as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [
            (str(SCHEMA_VERSION),)
        ]
        assert SCHEMA_VERSION == 5
        cols = con.execute(
            "SELECT row_columns, content_columns FROM ingest_log WHERE batch_id = 1"
        ).fetchall()[0]
    assert (
        cols[0]
        == '["event_time", "row_id", ' + ", ".join(f'"{f}"' for f in stored.feature_names) + ', "label"]'
    )
    assert cols[1] == '["event_time", ' + ", ".join(f'"{f}"' for f in stored.feature_names) + "]"
    hashes_hold(stored)
