"""Reproducibility (issue 4): `ct-assets reproduce V` retrains a registered model from the warehouse and
compares the bytes; the data hash covers every value of every row and not their order."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core.datasets.golden import build_golden
from ct_assets.core.datasets.training import DatasetInfo, define_training_dataset, load_dataset, read_split
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.core.modeling import model as lgbm
from ct_assets.store.sql import fetch_value
from ct_assets.store.warehouse import connect_reader, connect_writer, init_warehouse, transaction
from ct_assets.tools.reproduce import reproduce
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.cli import cli
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.runs import run

# One value of one row, changed in place: column -> SQL expression of the new value.
EDITS = {
    "monthly_spend": "monthly_spend + 0.01",
    "region": "CASE WHEN region = 'north' THEN 'south' ELSE 'north' END",
    "label": "1 - label",
    "satisfaction": "NULL",
}


@pytest.fixture
def champion(make_settings: Callable[..., Settings], instance: dg.DagsterInstance) -> Settings:
    settings = make_settings(**small())
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=3, rows=2000, seed=1))
    assert run(instance, "ingest_job").success
    assert run(instance, "ct_job").success
    return settings


def dataset_of(settings: Settings, version: str) -> DatasetInfo:
    with connect_reader(settings) as con:
        dataset_hash = fetch_value(con, "SELECT dataset_hash FROM models WHERE version = ?", [version])
        return load_dataset(con, dataset_hash)


def train_row_id(settings: Settings, ds: DatasetInfo) -> int:
    """A row of the train split: labelled, not golden, before the holdout boundary, in the window."""
    with connect_reader(settings) as con:
        row_id = fetch_value(
            con,
            "SELECT d.row_id FROM raw_deltas d WHERE d._batch_id <= ? AND d.label IS NOT NULL "
            "AND d.event_time >= ? AND d.event_time < ? AND d.satisfaction IS NOT NULL "
            "AND d.row_id NOT IN (SELECT row_id FROM golden_rows WHERE _golden_hash = ?) "
            "ORDER BY d.event_time, d.row_id LIMIT 1 OFFSET 100",
            [ds.max_batch_id, ds.window_start, ds.holdout_start_time, ds.golden_hash],
        )
        train_ids = set(read_split(con, settings, ds, "train")["row_id"].to_list())
    assert row_id in train_ids
    return int(row_id)


def edit(settings: Settings, where: str, column: str) -> None:
    with connect_writer(settings) as con, transaction(con):
        con.execute(f"UPDATE raw_deltas SET {column} = {EDITS[column]} WHERE {where}")


@pytest.mark.slow
def test_reproduce_the_champion_then_refuse_it_once_a_training_row_changed(
    champion: Settings, project: Path
) -> None:
    ds = dataset_of(champion, "v0001")
    ok = cli(project, "reproduce", "v0001")
    assert ok.returncode == 0, ok.stderr[-2000:]
    (line,) = ok.stdout.splitlines()
    assert line.startswith("v0001: reproducible: byte-identical model.txt (")
    assert f"from {ds.n_train} rows with data hash {ds.dataset_hash}" in line

    # A row outside the data set (its label has not arrived) may change: the model still reproduces.
    edit(
        champion,
        "label IS NULL AND row_id = (SELECT min(row_id) FROM raw_deltas WHERE label IS NULL)",
        "monthly_spend",
    )
    assert cli(project, "reproduce", "v0001").returncode == 0

    edit(champion, f"row_id = {train_row_id(champion, ds)}", "monthly_spend")
    bad = cli(project, "reproduce", "v0001")
    assert bad.returncode == 1, bad.stdout + bad.stderr[-2000:]
    assert "Traceback" not in bad.stderr
    (line,) = bad.stdout.splitlines()
    assert line.startswith("v0001: NOT reproducible: data hash mismatch: ")
    assert f"data set {ds.dataset_hash}: the train rows read ({ds.n_train} rows, hash " in line
    assert f"differ from the recorded ones ({ds.n_train} rows, hash {ds.train_hash})" in line

    unknown = cli(project, "reproduce", "v0042")
    assert unknown.returncode == 1
    assert [x for x in unknown.stderr.splitlines() if x.startswith("ct-assets: error: ")] != []
    assert "Traceback" not in unknown.stderr


@pytest.mark.parametrize("column", sorted(EDITS))
def test_any_value_changed_in_a_training_row_makes_the_model_not_reproducible(
    champion: Settings, column: str
) -> None:
    ds = dataset_of(champion, "v0001")
    assert reproduce(champion, "v0001").identical
    edit(champion, f"row_id = {train_row_id(champion, ds)}", column)
    out = reproduce(champion, "v0001")
    assert not out.identical
    assert out.reason.startswith("data hash mismatch: ")
    assert ds.dataset_hash in out.reason


# ------------------------------------------------------------------------------------------ data hash


def warehouse_at(make_settings: Callable[..., Settings], name: str) -> Settings:
    root = Path.cwd() / name
    settings = make_settings(
        **small(
            paths={
                "warehouse": str(root / "warehouse.duckdb"),
                "landing": str(root / "landing"),
                "quarantine": str(root / "quarantine"),
                "archive": str(root / "archive"),
                "models": str(root / "models"),
                "reports": str(root / "reports"),
                "state": str(root / "state"),
            }
        )
    )
    init_warehouse(settings)
    return settings


def build(settings: Settings) -> tuple[DatasetInfo, list[tuple[Any, ...]]]:
    """Ingest what landed, freeze the golden set, define the training data set; also the per-batch hashes."""
    ingest_landed_files(settings)
    with connect_writer(settings) as con, transaction(con):
        golden = build_golden(con, settings, reason="test", run_id="", now=utc_now())
        ds = define_training_dataset(con, settings, golden.golden_hash)
        batches = con.execute(
            "SELECT batch_id, rows, data_hash FROM ingest_log WHERE status = 'ingested' ORDER BY batch_id"
        ).fetchall()
    return ds, batches


def test_the_data_hash_ignores_row_order_and_sees_every_value(
    make_settings: Callable[..., Settings],
) -> None:
    original = warehouse_at(make_settings, "original")
    files = simulate(original, SimulationOptions(batches=3, rows=1000, seed=1))

    # The same rows, each file's rows in another order.
    shuffled = warehouse_at(make_settings, "shuffled")
    shuffled.paths.landing.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        frame = pl.read_parquet(f)
        moved = frame.sample(fraction=1.0, shuffle=True, seed=i)
        assert moved["row_id"].to_list() != frame["row_id"].to_list()
        moved.write_parquet(shuffled.paths.landing / f.name)
    # The same rows but one value: copies of the files, to be edited once a training row is known.
    edited = warehouse_at(make_settings, "edited")
    edited.paths.landing.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, edited.paths.landing / f.name)

    ds_original, batches_original = build(original)
    ds_shuffled, batches_shuffled = build(shuffled)
    assert batches_shuffled == batches_original  # per-delta content hashes, whatever the row order
    assert ds_shuffled == ds_original
    # Training reads the rows in one canonical order, so the two warehouses train the same bytes.
    with connect_reader(original) as con:
        train_original = read_split(con, original, ds_original, "train")
    with connect_reader(shuffled) as con:
        train_shuffled = read_split(con, shuffled, ds_shuffled, "train")
    assert train_shuffled.equals(train_original)
    text = {
        lgbm.train(frame, original).booster.model_to_string() for frame in (train_original, train_shuffled)
    }
    assert len(text) == 1

    row_id = train_row_id(original, ds_original)
    target = next(
        f for f in edited.paths.landing.iterdir() if row_id in set(pl.read_parquet(f)["row_id"].to_list())
    )
    frame = pl.read_parquet(target)
    frame.with_columns(
        pl.when(pl.col("row_id") == row_id)
        .then(pl.col("monthly_spend") + 0.01)
        .otherwise(pl.col("monthly_spend"))
        .alias("monthly_spend")
    ).write_parquet(target)
    ds_edited, batches_edited = build(edited)
    assert ds_edited.n_train == ds_original.n_train
    assert ds_edited.golden_hash == ds_original.golden_hash
    assert ds_edited.holdout_hash == ds_original.holdout_hash
    assert ds_edited.train_hash != ds_original.train_hash
    assert ds_edited.dataset_hash != ds_original.dataset_hash
    # The rewritten file may land in another order: compare the per-delta hashes as a set.
    changed = {h for _, _, h in batches_edited} ^ {h for _, _, h in batches_original}
    assert len(changed) == 2  # the edited delta's hash, before and after
