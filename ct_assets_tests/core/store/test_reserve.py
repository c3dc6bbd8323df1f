"""The golden reserve and the content hash, decided at ingest and stored with each row: the reserve flag
is a stable MD5 bucket of the row's key (its id, or its content when rows have no id), the content hash
covers event time and features (not the id, not the label), and a warehouse of schema 3 upgraded by
`init_warehouse` gets a reserve that is exactly its active golden set."""

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from ct_assets.config import Settings, load_settings
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.store.hashing import row_hash_sql
from ct_assets.store.schema import (
    RESERVE_BUCKETS,
    SCHEMA_VERSION,
    content_columns,
    raw_delta_columns,
    reserve_sql,
)
from ct_assets.store.warehouse import connect_reader, connect_writer, init_warehouse, transaction
from ct_assets_tests.helpers.config import write_config
from ct_assets_tests.helpers.data import labelled_frame

NOW = datetime(2025, 6, 1, 12, 0, 0)


def land(settings: Settings, *frames: pl.DataFrame) -> None:
    """Write each frame as one delta file and ingest them in order; every one must be ingested."""
    for i, frame in enumerate(frames):
        frame.write_parquet(settings.paths.landing / f"delta_{i:03d}_{frame.height}.parquet")
    report = ingest_landed_files(settings, now=NOW)
    assert [f.status for f in report.files] == ["ingested"] * len(frames), [f.reason for f in report.files]


def stored(settings: Settings, columns: str = "row_id, _reserve, _content_hash") -> pl.DataFrame:
    with connect_reader(settings) as con:
        return con.sql(f"SELECT {columns} FROM raw_deltas ORDER BY _batch_id, event_time").pl()


def md5_bucket(key: str) -> int:
    """The documented bucket of a key: the low 64 bits (little-endian) of the MD5 of its text, modulo
    RESERVE_BUCKETS; computed here in Python, apart from the SQL the warehouse runs."""
    return int.from_bytes(hashlib.md5(key.encode()).digest()[:8], "little") % RESERVE_BUCKETS


def project_settings(root: Path, tables: dict) -> Settings:
    """A second, independent project (its own warehouse) under `root`."""
    root.mkdir(parents=True)
    s = load_settings(write_config(root / "ct.toml", tables), cwd=root)
    init_warehouse(s)
    return s


# ------------------------------------------------------------------------------------- the reserve flag


@pytest.mark.parametrize("fraction", [0.1, 0.25])
def test_the_reserve_is_a_stable_md5_bucket_of_the_id_holding_golden_fraction_of_keys(
    make_settings: Callable[..., Settings], fraction: float
) -> None:
    s = make_settings(dataset={"golden_fraction": fraction})
    init_warehouse(s)
    land(s, labelled_frame(20_000, seed=3, end=NOW - timedelta(minutes=1)))
    rows = stored(s)
    assert rows.height == 20_000 and rows["_reserve"].null_count() == 0
    share = rows["_reserve"].mean()
    assert isinstance(share, float)
    assert abs(share - fraction) < 0.005, share  # binomial sd over 20k keys: 0.21 % (0.1), 0.31 % (0.25)
    cut = round(fraction * RESERVE_BUCKETS)
    want = [md5_bucket(str(i)) < cut for i in rows["row_id"].to_list()]
    assert rows["_reserve"].to_list() == want


def test_the_same_id_in_two_files_gets_the_same_flag_whatever_its_values(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Two warehouses receive files with the same ids but unrelated values (another seed, other times,
    rows in another order): every id gets the same flag in both, while its content hash differs."""
    first = make_settings(dataset={"golden_fraction": 0.2})
    init_warehouse(first)
    other = project_settings(tmp_path / "other", {"dataset": {"golden_fraction": 0.2}})
    a = labelled_frame(3000, seed=5, end=NOW - timedelta(days=2))
    b = (
        labelled_frame(3000, seed=6, end=NOW - timedelta(minutes=1))
        .with_columns(a["row_id"].reverse().alias("row_id"))  # the same ids, reversed over other rows
        .sort("event_time")
    )
    land(first, a)
    land(other, b)
    one, two = stored(first), stored(other)
    joined = one.join(two, on="row_id", suffix="_other")
    assert joined.height == 3000
    assert joined["_reserve"].to_list() == joined["_reserve_other"].to_list()
    assert 0 < joined["_reserve"].sum() < 3000
    assert (joined["_content_hash"] != joined["_content_hash_other"]).all()


def test_a_changed_golden_fraction_applies_to_rows_landed_after_it(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings(dataset={"golden_fraction": 0.1})
    init_warehouse(s)
    land(s, labelled_frame(4000, seed=1, end=NOW - timedelta(days=3)))
    before = stored(s)
    s = make_settings(dataset={"golden_fraction": 0.5})
    land(s, labelled_frame(4000, seed=2, end=NOW - timedelta(minutes=1)))
    after = stored(s)
    old = after.filter(pl.col("row_id") < 2_000_000)
    assert old.equals(before)  # stored at ingest, never recomputed
    new = after.filter(pl.col("row_id") >= 2_000_000)
    assert new["_reserve"].to_list() == [md5_bucket(str(i)) < 5000 for i in new["row_id"].to_list()]


def rowless(n: int, seed: int, start: datetime) -> pl.DataFrame:
    """Rows of the default schema without an id, a minute apart from `start`."""
    return labelled_frame(n, seed, end=start + timedelta(seconds=60 * n)).drop("row_id")


def test_without_an_id_rows_equal_in_every_value_get_the_same_flag(
    make_settings: Callable[..., Settings],
) -> None:
    """Rows without an id are keyed by their content: the same row landed again in another file falls
    on the same side of the reserve."""
    s = make_settings(columns={"row_id": ""}, dataset={"golden_fraction": 0.3})
    init_warehouse(s)
    a = rowless(2000, seed=1, start=NOW - timedelta(days=5))
    again = pl.concat([a.head(1000), rowless(1000, seed=2, start=NOW - timedelta(days=2))])
    land(s, a, again)
    rows = stored(s, "_batch_id, _row_hash, _content_hash, _reserve")
    first, second = rows.filter(pl.col("_batch_id") == 1), rows.filter(pl.col("_batch_id") == 2)
    pairs = first.join(second, on="_row_hash", suffix="_again")
    assert pairs.height == 1000
    assert pairs["_reserve"].to_list() == pairs["_reserve_again"].to_list()
    assert 0 < pairs["_reserve"].sum() < 1000
    # and the flag is the bucket of the row's content hash (the key without an id)
    cut = round(0.3 * RESERVE_BUCKETS)
    assert rows["_reserve"].to_list() == [h % RESERVE_BUCKETS < cut for h in rows["_content_hash"].to_list()]


def test_without_an_id_rows_equal_in_content_get_the_same_flag_whatever_their_label(
    make_settings: Callable[..., Settings],
) -> None:
    """The README keys a row without an id by its content, and content is event time and features: the
    same event landed again once its label arrived (or changed) must stay on its side of the reserve."""
    s = make_settings(columns={"row_id": ""}, dataset={"golden_fraction": 0.3})
    init_warehouse(s)
    a = rowless(2000, seed=1, start=NOW - timedelta(days=5))
    relabelled = a.with_columns(pl.lit(None, dtype=pl.Int64).alias("label"))  # label not arrived yet
    land(s, relabelled, a)
    rows = stored(s, "_batch_id, _content_hash, _reserve")
    first, second = rows.filter(pl.col("_batch_id") == 1), rows.filter(pl.col("_batch_id") == 2)
    pairs = first.join(second, on="_content_hash", suffix="_again")
    assert pairs.height == 2000
    assert pairs["_reserve"].to_list() == pairs["_reserve_again"].to_list()


# ------------------------------------------------------------------------------------ the content hash


def test_the_content_hash_covers_event_time_and_features_not_the_id_nor_the_label(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings()
    init_warehouse(s)
    assert content_columns(s) == ["event_time", *s.feature_names]
    base = labelled_frame(1, seed=9, end=NOW - timedelta(hours=1)).with_columns(
        pl.lit(1, dtype=pl.Int64).alias("label"), pl.lit(3.0).alias("satisfaction")
    )
    changed = {  # one value changed at a time, each still valid
        "event_time": base["event_time"][0] + timedelta(seconds=1),
        "tenure_months": base["tenure_months"][0] + 1,
        "monthly_spend": base["monthly_spend"][0] + 0.01,
        "support_calls": base["support_calls"][0] + 1,
        "usage_hours": None,
        "discount_rate": 0.5 if base["discount_rate"][0] != 0.5 else 0.25,
        "satisfaction": 4.0,
        "region": "west" if base["region"][0] != "west" else "north",
        "channel": "partner" if base["channel"][0] != "partner" else "web",
        "plan": "premium" if base["plan"][0] != "premium" else "basic",
    }
    assert set(changed) == set(content_columns(s))
    rows = [
        base.with_columns(pl.lit(2, dtype=pl.Int64).alias("row_id"), pl.lit(0, dtype=pl.Int64).alias("label"))
    ]
    for n, (column, value) in enumerate(changed.items(), start=3):
        rows.append(
            base.with_columns(
                pl.lit(value, dtype=base.schema[column]).alias(column),
                pl.lit(n, dtype=pl.Int64).alias("row_id"),
            )
        )
    land(s, pl.concat([base.with_columns(pl.lit(1, dtype=pl.Int64).alias("row_id")), *rows]))
    hashes = dict(stored(s, "row_id, _content_hash").iter_rows())
    assert hashes[2] == hashes[1]  # another id and another label: the same content
    for n, column in enumerate(changed, start=3):
        assert hashes[n] != hashes[1], column
    assert len(set(hashes.values())) == len(changed) + 1
    with connect_reader(s) as con:  # and it is the row hash of exactly those columns
        recomputed = dict(
            con.execute(f"SELECT row_id, {row_hash_sql(content_columns(s))} FROM raw_deltas").fetchall()
        )
    assert recomputed == hashes


# ---------------------------------------------------------------------------------- upgrade from schema 3

SCHEMA_4_COLUMNS = {
    "raw_deltas": ["_reserve", "_content_hash"],
    "golden_versions": ["window_start", "changes"],
    "dataset_versions": [
        "selection",
        "excluded_batches",
        "rows_reserved",
        "rows_same_content",
        "rows_held_back",
    ],
}


def make_schema_3(s: Settings, versions: dict[str, list[int]]) -> None:
    """Turn the warehouse into one of schema 3: without the columns schema 4 added, and with golden
    versions (built in that order) that hold rows of any key, as golden sets did then."""
    with connect_writer(s) as con, transaction(con):
        for table, columns in SCHEMA_4_COLUMNS.items():
            for column in columns:
                con.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        for build, (ghash, ids) in enumerate(versions.items(), start=1):
            con.execute(
                "INSERT INTO golden_rows SELECT * EXCLUDE (_batch_id, _row_hash), _batch_id, _row_hash, ? "
                f"FROM raw_deltas WHERE row_id IN ({', '.join(map(str, ids))})",
                [ghash],
            )
            con.execute(
                "INSERT INTO golden_versions VALUES (?, ?, ?, ?, 1, '{}', 'first build', 'run')",
                [build, ghash, NOW, len(ids)],
            )
        con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")


def test_an_upgraded_schema_3_warehouse_reserves_exactly_its_active_golden_set(
    make_settings: Callable[..., Settings],
) -> None:
    """Before schema 4 the only rows no model was allowed to train on were the active golden set's:
    the upgrade makes exactly those (by key) the reserve, older golden versions' rows not, and gives
    every old row the content hash ingest would have stored."""
    s = make_settings()
    init_warehouse(s)
    land(s, labelled_frame(3000, seed=4, end=NOW - timedelta(minutes=1)))
    ingested = stored(s)
    ids = ingested["row_id"].to_numpy()
    rng = np.random.default_rng(0)
    older, active = rng.choice(ids, 300, replace=False), rng.choice(ids, 400, replace=False)
    assert set(older) - set(active) and set(older) & set(active)
    make_schema_3(s, {"old0000000000000": older.tolist(), "act0000000000000": active.tolist()})
    with duckdb.connect(str(s.paths.warehouse), read_only=True) as con:  # ct_assets refuses to read it
        columns = {r[0] for r in con.execute("DESCRIBE raw_deltas").fetchall()}
    assert "_reserve" not in columns and "_content_hash" not in columns

    init_warehouse(s)  # the upgrade

    upgraded = stored(s)
    with connect_reader(s) as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [
            (str(SCHEMA_VERSION),)
        ]
        n_golden = con.execute("SELECT count(*) FROM golden_rows").fetchall()[0][0]
    assert SCHEMA_VERSION == 5
    assert n_golden == 700  # both versions' rows are kept
    reserved = set(upgraded.filter(pl.col("_reserve"))["row_id"].to_list())
    assert reserved == set(active.tolist())
    assert upgraded["_reserve"].null_count() == 0 and upgraded["_content_hash"].null_count() == 0
    # the content hash of each old row is the one ingest stores (ingest computed it before the drop)
    assert upgraded.select("row_id", "_content_hash").equals(ingested.select("row_id", "_content_hash"))

    # rows landed after the upgrade fall in the reserve by the hash bucket again, and init is idempotent
    land(s, labelled_frame(2000, seed=8, end=NOW - timedelta(seconds=1)))
    init_warehouse(s)
    later = stored(s).filter(pl.col("row_id") >= 8_000_000)
    assert later["_reserve"].to_list() == [md5_bucket(str(i)) < 1000 for i in later["row_id"].to_list()]
    assert stored(s).filter(pl.col("row_id") < 8_000_000).equals(upgraded)


def test_an_upgraded_schema_3_warehouse_without_golden_set_reserves_nothing_old(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings()
    init_warehouse(s)
    land(s, labelled_frame(1000, seed=4, end=NOW - timedelta(minutes=1)))
    make_schema_3(s, {})
    init_warehouse(s)
    rows = stored(s)
    assert rows["_reserve"].to_list() == [False] * 1000
    assert rows["_content_hash"].null_count() == 0


def test_the_reserve_expression_reads_only_the_key(make_settings: Callable[..., Settings]) -> None:
    """reserve_sql names no column but the id when there is one (and every stored column otherwise)."""
    with_id = reserve_sql(make_settings())
    assert '"row_id"' in with_id
    for name, _ in raw_delta_columns(make_settings()):
        if name != "row_id":
            assert f'"{name}"' not in with_id, name
    without = reserve_sql(make_settings(columns={"row_id": ""}))
    assert '"row_id"' not in without and '"event_time"' in without
