"""Late labels at ingest (issue 13, point 1): labelled rows sent again and label files become label events
(attached, pending, conflict, duplicate) without rewriting a stored row; a label that arrives before its
row is attached when the row lands; each file's ingest_log row counts them; conflicts raise an alert."""

from collections.abc import Callable
from datetime import datetime, timedelta

import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.core.ingest.ingest import FileResult, ingest_landed_files
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets_tests.helpers.data import delta_frame

NOW = datetime(2025, 6, 1, 12, 0, 0)


def land(settings: Settings, frame: pl.DataFrame, name: str) -> list[FileResult]:
    """Write `frame` into the landing folder as `name` (Parquet or CSV by its suffix) and ingest it."""
    path = settings.paths.landing / name
    frame.write_csv(path) if name.endswith(".csv") else frame.write_parquet(path)
    return ingest_landed_files(settings, now=NOW).files


def events(settings: Settings) -> list[tuple]:
    """(row_key, label, status, batch_id, row_batch_id, source_event_id) of every label event, in order."""
    with connect_reader(settings) as con:
        return con.execute(
            "SELECT row_key, label, status, batch_id, row_batch_id, source_event_id FROM label_events "
            "ORDER BY event_id"
        ).fetchall()


def stored_labels(settings: Settings) -> dict[int, int | None]:
    with connect_reader(settings) as con:
        return dict(con.execute("SELECT row_id, label FROM raw_deltas").fetchall())


def log_row(settings: Settings, batch_id: int) -> dict:
    with connect_reader(settings) as con:
        cur = con.execute(
            "SELECT kind, rows, rows_labelled, rows_duplicate, labels_attached, labels_pending, labels_conflict, "
            "labels_duplicate FROM ingest_log WHERE batch_id = ?",
            [batch_id],
        )
        names = [d[0] for d in cur.description]
        return dict(zip(names, cur.fetchall()[0], strict=True))


@pytest.fixture
def landed(warehouse: Settings) -> pl.DataFrame:
    """40 rows landed as batch 1, the labels of rows 3 and 11 (ids 4 and 12) not arrived yet."""
    frame = delta_frame(1, 40, seed=1, now=NOW)
    (result,) = land(warehouse, frame, "rows.parquet")
    assert (result.status, result.rows, result.rows_labelled) == ("ingested", 40, 38)
    return frame


def test_rows_sent_again_with_their_labels_attach_them_without_rewriting_a_row(
    warehouse: Settings, landed: pl.DataFrame
) -> None:
    again = landed.filter(pl.col("row_id").is_in([4, 12, 20])).with_columns(
        pl.when(pl.col("row_id") == 4)
        .then(1)
        .when(pl.col("row_id") == 12)
        .then(0)
        .otherwise(pl.col("label"))
        .alias("label")
    )
    flipped = 1 - int(landed.filter(pl.col("row_id") == 21)["label"][0])
    conflict = landed.filter(pl.col("row_id") == 21).with_columns(
        pl.lit(flipped, dtype=pl.Int64).alias("label")
    )
    (result,) = land(warehouse, pl.concat([again, conflict]), "again.parquet")

    assert (result.status, result.rows, result.rows_duplicate) == ("ingested", 0, 4)
    assert (result.labels.attached, result.labels.conflict, result.labels.pending) == (2, 1, 0)
    assert result.labels.delay_hours is not None and result.labels.delay_hours > 0
    # The same label again (row 20) is no event; the stored rows are untouched.
    assert events(warehouse) == [
        (4, 1, "attached", 2, 1, None),
        (12, 0, "attached", 2, 1, None),
        (21, flipped, "conflict", 2, 1, None),
    ]
    assert stored_labels(warehouse)[4] is None and stored_labels(warehouse)[21] == 1 - flipped
    assert log_row(warehouse, 2) == {
        "kind": "rows",
        "rows": 0,
        "rows_labelled": 0,
        "rows_duplicate": 4,
        "labels_attached": 2,
        "labels_pending": 0,
        "labels_conflict": 1,
        "labels_duplicate": 0,
    }
    with connect_reader(warehouse) as con:
        alert = con.execute("SELECT kind, cause, message FROM alerts").fetchall()
    assert alert == [("data", "label_conflict:2", alert[0][2])]
    assert "1 label differ" in alert[0][2] and "the first label stays" in alert[0][2]

    # Sent a third time with another label: the first attached label stays, the new one is a conflict.
    (result,) = land(
        warehouse, again.filter(pl.col("row_id") == 4).with_columns(pl.lit(0).alias("label")), "x.csv"
    )
    assert (result.labels.attached, result.labels.conflict) == (0, 1)


def test_a_label_file_attaches_pends_and_refuses_to_relabel(
    warehouse: Settings, landed: pl.DataFrame
) -> None:
    own = int(landed.filter(pl.col("row_id") == 5)["label"][0])
    labels = pl.DataFrame({"row_id": [4, 5, 6, 500], "label": [1, own, 1 - int(landed["label"][5]), 0]})
    (result,) = land(warehouse, labels, "labels.csv")

    assert (result.status, result.kind, result.rows, result.batch_id) == ("ingested", "labels", 0, 2)
    assert (
        result.labels.attached,
        result.labels.duplicate,
        result.labels.conflict,
        result.labels.pending,
    ) == (1, 1, 1, 1)
    assert [(e[0], e[2], e[4]) for e in events(warehouse)] == [
        (4, "attached", 1),
        (5, "duplicate", 1),
        (6, "conflict", 1),
        (500, "pending", None),
    ]
    assert log_row(warehouse, 2)["kind"] == "labels"
    assert len(stored_labels(warehouse)) == 40  # no row appended


def test_a_label_that_arrives_before_its_row_is_attached_when_the_row_lands(
    warehouse: Settings, landed: pl.DataFrame
) -> None:
    land(warehouse, pl.DataFrame({"row_id": [41, 42, 43], "label": [1, 0, 1]}), "early.parquet")
    later = (
        delta_frame(41, 20, seed=2, now=NOW)
        .head(3)
        .with_columns(pl.Series("label", [None, 0, 0], dtype=pl.Int64))
    )
    (result,) = land(warehouse, later, "rows2.parquet")

    assert (result.rows, result.rows_labelled) == (3, 2)
    assert (result.labels.attached, result.labels.duplicate, result.labels.conflict) == (1, 1, 1)
    pending = {e[0]: i + 1 for i, e in enumerate(events(warehouse)) if e[2] == "pending"}
    resolved = [e for e in events(warehouse) if e[5] is not None]
    assert [(e[0], e[1], e[2], e[3], e[4], e[5]) for e in resolved] == [
        (41, 1, "attached", 3, 3, pending[41]),
        (42, 0, "duplicate", 3, 3, pending[42]),
        (43, 1, "conflict", 3, 3, pending[43]),
    ]
    assert stored_labels(warehouse)[43] == 0  # a row's own label is kept


def test_label_files_are_validated_whole(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(columns={"label_time": "labelled_at"})
    init_warehouse(settings)
    land(settings, delta_frame(1, 20, seed=1, now=NOW), "rows.parquet")
    at = [NOW - timedelta(days=1), None]
    good = pl.DataFrame({"row_id": [4, 12], "label": [1, 0], "labelled_at": at})
    bad = {
        "null_label.csv": (
            pl.DataFrame({"row_id": [4, 12], "label": [1, None]}),
            "expect_column_values_to_not_be_null",
        ),
        "repeated.csv": (
            pl.DataFrame({"row_id": [4, 4], "label": [1, 0]}),
            "expect_column_values_to_be_unique",
        ),
        "class.csv": (
            pl.DataFrame({"row_id": [4, 12], "label": [1, 7]}),
            "expect_column_values_to_be_in_set",
        ),
        "future.parquet": (
            good.with_columns(pl.Series("labelled_at", [NOW + timedelta(days=2), None])),
            "in the future",
        ),
    }
    for name, (frame, rule) in bad.items():
        (result,) = land(settings, frame, name)
        assert result.status == "quarantined", name
        assert rule in result.reason, (name, result.reason)
    (result,) = land(settings, good.with_columns(pl.col("labelled_at").cast(pl.String)), "good.csv")
    assert (result.status, result.kind, result.labels.attached) == ("ingested", "labels", 2)
    with connect_reader(settings) as con:
        times = con.execute(
            "SELECT row_key, label_time, delay_seconds FROM label_events ORDER BY row_key"
        ).fetchall()
    assert times[0][1] == at[0] and times[1][1] is None
    assert times[0][2] == pytest.approx(
        (at[0] - (NOW - timedelta(days=10) + timedelta(minutes=4))).total_seconds()
    )


def test_a_file_of_ids_and_labels_with_another_column_is_a_file_of_rows(
    warehouse: Settings, landed: pl.DataFrame
) -> None:
    """Classification is by the exact columns: anything else is a file of rows, quarantined for its missing
    columns, with a word on what a label file is."""
    (result,) = land(warehouse, pl.DataFrame({"row_id": [4], "label": [1], "when": ["today"]}), "odd.csv")
    assert result.status == "quarantined"
    assert "expect_column_to_exist" in result.reason
    assert "a label file holds exactly the columns row_id, label" in result.reason
