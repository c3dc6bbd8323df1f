"""The golden set: stratified so that every slice value is covered, made of real rows, frozen once built,
and only built from labelled rows."""

from pathlib import Path

import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.core.datasets.golden import active_golden, golden_quotas, read_golden
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.errors import DataError
from ct_assets.store.warehouse import connect_writer, init_warehouse
from ct_assets_tests.core.datasets.support import NOW, golden, query, use


def test_golden_set_covers_every_slice_value(base_data: Path, settings: Settings) -> None:
    s = use(base_data, settings)
    g = golden(s)
    assert not g.reused
    assert g.rows > 0
    with connect_writer(s) as con:
        rows = read_golden(con, s, g.golden_hash)
    assert rows.height == g.rows
    assert rows["label"].null_count() == 0
    want = s.dataset.golden_min_rows_per_slice
    for col in s.columns.slices:
        categories = set(s.feature(col).categories or ())
        assert set(g.slice_counts[col]) == categories
        counts = dict(rows.group_by(col).len().iter_rows())
        assert counts == g.slice_counts[col]
        # Golden rows come from the reserve only: coverage is what the reserve holds, up to the minimum.
        available = dict(
            query(
                s, f"SELECT {col}, count(*) FROM raw_deltas WHERE label IS NOT NULL AND _reserve GROUP BY 1"
            )
        )
        for value in categories:
            assert counts[value] >= min(want, available[value]), (col, value, counts, available)


def test_golden_rows_are_real_rows(base_data: Path, settings: Settings) -> None:
    s = use(base_data, settings)
    g = golden(s)
    assert query(
        s,
        "SELECT count(*) FROM golden_rows g JOIN raw_deltas r "
        "ON g.row_id = r.row_id AND g._row_hash = r._row_hash AND g._batch_id = r._batch_id "
        f"WHERE g._golden_hash = '{g.golden_hash}'",
    ) == [(g.rows,)]


def test_golden_quotas_raise_every_slice_value_to_its_minimum(settings: Settings) -> None:
    """Every slice value gets at least golden_min_rows_per_slice (200) rows when it has that many,
    even when one of its cells is small and was already raised for another slice column."""
    cells = pl.DataFrame(
        {
            "region": ["west", "north", "west", "north"],
            "channel": ["partner", "partner", "web", "web"],
            "n": [20, 300, 400, 5000],
        }
    )
    q = golden_quotas(cells, settings)
    assert all(0 < quota <= n for quota, n in zip(q["quota"], q["n"], strict=True))
    for col in ("region", "channel"):
        per_value = q.group_by(col).agg(pl.col("quota").sum(), pl.col("n").sum())
        for value, quota, n in per_value.iter_rows():
            assert quota >= min(200, n), (col, value, quota, n)


def test_golden_quotas_keep_rare_cells_and_respect_the_cap(make_settings) -> None:
    cells = pl.DataFrame(
        {"region": ["north", "south", "east", "west"], "channel": ["web"] * 4, "n": [50_000, 20_000, 3, 1]}
    )
    # Without a per-slice minimum, the cap holds (give or take one row per kept cell).
    s = make_settings(dataset={"golden_max_rows": 100, "golden_min_rows_per_slice": 0})
    q = golden_quotas(cells, s)
    assert q["quota"].sum() <= 100 + len(cells)
    assert q["quota"].min() >= 1  # no slice value disappears
    # With one, coverage wins over the cap: every value gets min(200, what it has).
    s = make_settings(dataset={"golden_max_rows": 100, "golden_min_rows_per_slice": 200})
    q = golden_quotas(cells, s)
    assert q["quota"].to_list() == [200, 200, 3, 1]


def test_golden_set_is_frozen(base_data: Path, settings: Settings) -> None:
    s = use(base_data, settings)
    first = golden(s)
    second = golden(s)
    assert second.golden_hash == first.golden_hash
    assert second.rows == first.rows
    assert second.reused
    # Every build is a row of golden_versions (the newest is active); the rows of one hash are stored once.
    assert query(s, "SELECT build_id, golden_hash, rows FROM golden_versions ORDER BY build_id") == [
        (1, first.golden_hash, first.rows),
        (2, first.golden_hash, first.rows),
    ]
    assert query(s, "SELECT _golden_hash, count(*) FROM golden_rows GROUP BY 1") == [
        (first.golden_hash, first.rows)
    ]
    with connect_writer(s) as con:
        before = read_golden(con, s, first.golden_hash)
        active = active_golden(con)
    assert active is not None
    assert active.golden_hash == first.golden_hash

    # new rows arrive: the recorded golden set stays exactly as it was
    report = ingest_landed_files(s, now=NOW)
    assert [f.status for f in report.files] == ["ingested"]
    with connect_writer(s) as con:
        assert read_golden(con, s, first.golden_hash).equals(before, null_equal=True)
        assert active_golden(con).golden_hash == first.golden_hash  # type: ignore[union-attr]

    # a build now (what an explicit rebuild does) sees the new rows: a new hash, the newest build, active
    third = golden(s)
    assert third.golden_hash != first.golden_hash
    assert not third.reused
    assert query(s, "SELECT build_id, golden_hash FROM golden_versions ORDER BY build_id") == [
        (1, first.golden_hash),
        (2, first.golden_hash),
        (3, third.golden_hash),
    ]
    with connect_writer(s) as con:
        assert active_golden(con).golden_hash == third.golden_hash  # type: ignore[union-attr]
        assert read_golden(con, s, first.golden_hash).equals(before, null_equal=True)


def test_golden_set_needs_labelled_rows(settings: Settings) -> None:
    init_warehouse(settings)
    with pytest.raises(DataError, match="no labelled rows"):
        golden(settings)
