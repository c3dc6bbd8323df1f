"""Prepared warehouses for the data set tests, and short ways to build the golden set, define the training
data set and read it on a test's own copy."""

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from ct_assets.config import Settings, load_settings
from ct_assets.core.datasets.golden import GoldenInfo, build_golden
from ct_assets.core.datasets.training import DatasetInfo, define_training_dataset, read_split
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.core.ingest.landing import ready_files
from ct_assets.store.warehouse import connect_writer, init_warehouse, transaction
from ct_assets.tools.simulator import SimulationOptions, generate_rows, simulate

NOW = datetime(2025, 6, 1, 12, 0, 0)
BATCHES, ROWS = 4, 1000  # ingested into the base warehouse; one more batch waits in its landing folder


def fill(root: Path, config_text: str, files: list[pl.DataFrame] | None) -> Path:
    config = root / "ct.toml"
    config.write_text(config_text, encoding="utf-8")
    s = load_settings(config, cwd=root)
    init_warehouse(s)
    if files is None:
        simulate(s, SimulationOptions(batches=BATCHES + 1, rows=ROWS, seed=7), now=NOW)
    else:
        for i, frame in enumerate(files):
            frame.write_parquet(s.paths.landing / f"delta_{i}.parquet")
    landed = ready_files(s.paths.landing)
    report = ingest_landed_files(s, now=NOW, files=landed[:BATCHES] if files is None else landed)
    assert all(f.status == "ingested" for f in report.files), [f.reason for f in report.files]
    return root / "data"


def frame_without_ids(n: int, seed: int, start: datetime) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    data = generate_rows(rng, n, SimulationOptions(batches=1, rows=n, seed=seed))
    times = [start + timedelta(seconds=7 * i) for i in range(n)]
    return pl.DataFrame({"event_time": times, **data}).with_columns(
        pl.col("event_time").cast(pl.Datetime("us"))
    )


def use(data: Path, settings: Settings) -> Settings:
    """Copy a prepared data folder into this test's project."""
    shutil.copytree(data, settings.paths.warehouse.parent)
    return settings


def golden(s: Settings) -> GoldenInfo:
    with connect_writer(s) as con, transaction(con):
        return build_golden(con, s, reason="test", run_id="run", now=NOW)


def define(s: Settings, golden_hash: str) -> DatasetInfo:
    with connect_writer(s) as con:
        return define_training_dataset(con, s, golden_hash)


def split(s: Settings, ds: DatasetInfo, part: str) -> pl.DataFrame:
    with connect_writer(s) as con:
        return read_split(con, s, ds, part)


def query(s: Settings, sql: str) -> list[tuple]:
    with connect_writer(s) as con:
        return con.execute(sql).fetchall()
