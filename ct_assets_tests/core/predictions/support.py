"""A warehouse with landed batches and models registered by hand (a champion, a challenger waiting for
review), for the predictions tests: no Dagster, no CT run."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.core.modeling import model as lgbm
from ct_assets.store.sql import fetch_value
from ct_assets.store.warehouse import connect_reader, connect_writer
from ct_assets_tests.helpers.data import SMALL_MODEL, delta_frame

T_NOW = utc_now()


def land(s: Settings, frame: pl.DataFrame, name: str) -> int:
    """Land `frame` as one Parquet file and ingest it; returns its batch id."""
    s.paths.landing.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(s.paths.landing / name)
    (result,) = ingest_landed_files(s).files
    assert result.status == "ingested", result.reason
    assert result.batch_id is not None
    return result.batch_id


def batch(first_id: int, n: int, seed: int, s: Settings | None = None) -> pl.DataFrame:
    """n rows of the default schema (ids from first_id; without the id column when `s` has none)."""
    frame = delta_frame(first_id, n, seed, T_NOW)
    return frame.drop("row_id") if s is not None and not s.columns.row_id else frame


def register(
    s: Settings,
    version: str,
    train: pl.DataFrame,
    *,
    action: str | None = "promoted",
    watermark_batch_id: int = 0,
    watermark_event_time: datetime | None = None,
    seed: int = 1,
    iterations: int = 20,
) -> lgbm.LoadedModel:
    """Train a small model on `train`, save it in the models folder, record it, and give it a ledger row:
    `promoted` makes it the champion, `blocked` puts it in the review queue (None: no ledger row)."""
    params = {**s.training, **SMALL_MODEL, "seed": seed, "num_iterations": iterations}
    trained = lgbm.train(train.filter(pl.col(s.columns.label).is_not_null()), s, params)
    folder, card = lgbm.save(trained, s.paths.models, version, {})
    now = utc_now()
    with connect_writer(s) as con:
        registry.record_model(
            con,
            registry.ModelRecord(
                version,
                now,
                "test",
                "test",
                params,
                train.height,
                0,
                0.0,
                watermark_batch_id,
                watermark_event_time,
                card["model_sha256"],
                None,
            ),
        )
        if action is not None:
            champion = version if action == "promoted" else registry.champion(con)
            registry.record(con, action=action, version=version, champion_after=champion, now=now)
    return lgbm.load(folder)


def predictions(s: Settings, where: str = "TRUE") -> pl.DataFrame:
    """The predictions table (a filter given as SQL), ordered by batch and key."""
    with connect_reader(s) as con:
        key = s.columns.row_id or "_row_hash"
        return con.sql(f'SELECT * FROM predictions WHERE {where} ORDER BY _batch_id, "{key}"').pl()


def count(s: Settings, sql: str) -> int:
    with connect_reader(s) as con:
        return int(fetch_value(con, sql) or 0)
