"""The data hash covers every value of every row and not their order: the same rows landed in another
order give the same per-delta and data set hashes and train the same model bytes; one value changed
changes them."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core.datasets.golden import build_golden
from ct_assets.core.datasets.training import DatasetInfo, define_training_dataset, read_split
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.core.modeling import model as lgbm
from ct_assets.store.warehouse import connect_reader, connect_writer, init_warehouse, transaction
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.warehouse import train_row_id


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
