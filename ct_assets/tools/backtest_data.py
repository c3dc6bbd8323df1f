"""What the backtest reads from its scratch warehouse, and the models it scores: which batch each file
became, the loop's training data sets, each batch's labelled rows as known now, and the always-promote
baseline's own models where the loop's data set excluded batches (plain logic, no Dagster)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.datasets.keys import key_order
from ct_assets.core.datasets.training import DatasetInfo, load_dataset, selection_sql
from ct_assets.core.ingest.landing import display_name
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.modeling import shared
from ct_assets.core.modeling.metrics import metric_value
from ct_assets.store import labels
from ct_assets.store.schema import raw_delta_columns
from ct_assets.store.sql import quote


def batches_by_file(con: duckdb.DuckDBPyConnection, files: list[str]) -> list[tuple[int | None, str]]:
    """For each file, the batch it became (None when it was quarantined, a duplicate or never
    ingested) and the file's status, from the ingest log (which names files as `display_name` does)."""
    logged: dict[str, tuple[int | None, str]] = {}
    for name, status, batch_id, reason in con.execute(
        "SELECT file_name, status, batch_id, reason FROM ingest_log ORDER BY entry_id"
    ).fetchall():
        if name in logged and logged[name][0] is not None:
            continue  # the file's batch stands, whatever a later copy of it was logged as
        text = status + (f": {reason}" if reason else "")
        logged[name] = (int(batch_id) if status == "ingested" and batch_id is not None else None, text)
    return [logged.get(display_name(name), (None, "not ingested")) for name in files]


def datasets(con: duckdb.DuckDBPyConnection, versions: list[str]) -> dict[str, DatasetInfo]:
    """The training data set of each trained challenger, by version."""
    out = {}
    for v in versions:
        rec = registry.model(con, v)
        if rec is not None and rec.dataset_hash:
            out[v] = load_dataset(con, rec.dataset_hash)
    return out


def excluded_batches(ds: DatasetInfo) -> list[int]:
    """Batches the loop's training data set held back or excluded (core.monitoring.evidence)."""
    return [int(b) for b in ds.excluded_batches]


def always_promote_models(
    con: duckdb.DuckDBPyConnection, settings: Settings, datasets: dict[str, DatasetInfo], baseline_dir: Path
) -> tuple[dict[str, Path], list[str]]:
    """The model folder the always-promote baseline uses for each of the loop's versions: the loop's
    own, except for a challenger whose data set excluded batches, for which the baseline trains its
    own model on the same window without the exclusions (into `baseline_dir/<version>`)."""
    paths = {}
    own = []
    for version, ds in datasets.items():
        if excluded_batches(ds):
            paths[version] = train_without_exclusions(con, settings, ds, baseline_dir, version)
            own.append(version)
    return paths, own


def window_train_rows(con: duckdb.DuckDBPyConnection, settings: Settings, ds: DatasetInfo) -> pl.DataFrame:
    """The train split of the window `ds` names (newest batch, window start, selection rule, holdout
    boundary) with no batch held back or excluded, in the canonical order."""
    et = quote(settings.columns.event_time)
    names = ", ".join(quote(n) for n, _ in raw_delta_columns(settings))
    sql = (
        f"SELECT {names} FROM ({selection_sql(settings, ds.selection, ())}) WHERE {et} < $boundary "
        f"ORDER BY {key_order(settings)}"
    )
    return con.sql(sql, params={**ds.params(), "boundary": ds.holdout_start_time}).pl()


def train_without_exclusions(
    con: duckdb.DuckDBPyConnection, settings: Settings, ds: DatasetInfo, baseline_dir: Path, version: str
) -> Path:
    """Train the always-promote model of a step whose data set excluded batches: the same window,
    parameters and row order as the loop's challenger, without the exclusions. Returns its folder."""
    target = baseline_dir / version
    if target.exists():  # trained by an earlier evaluation of the same scratch folder
        return target
    rows = window_train_rows(con, settings, ds)
    weights = lgbm.sample_weights(rows, settings.columns.exploration, settings.dataset.exploration_weight)
    trained = lgbm.train(
        rows,
        settings,
        budget_seconds=settings.guardrails.max_training_seconds,
        budget_source="[guardrails] max_training_seconds",
        weights=weights,
    )
    folder, _ = lgbm.save(
        trained,
        baseline_dir,
        version,
        {"data_hash": None, "window_of": ds.dataset_hash, "excluded_batches_ignored": excluded_batches(ds)},
    )
    return folder


def labelled_rows(con: duckdb.DuckDBPyConnection, settings: Settings, batch_id: int) -> pl.DataFrame:
    """The rows of one batch whose label is known now (read at the end of the replay, so labels that
    arrived after the batch count, in later rows or label files), in the canonical order."""
    label = quote(settings.columns.label)
    effective = labels.label_sql(settings)
    names = ", ".join(
        f"{effective} AS {label}" if n == settings.columns.label else f"d.{quote(n)}"
        for n, _ in raw_delta_columns(settings)
    )
    return con.sql(
        f"SELECT {names} FROM raw_deltas d{labels.join_sql(settings)} WHERE d._batch_id = $b "
        f"AND {effective} IS NOT NULL ORDER BY {key_order(settings, 'd')}",
        params={"b": batch_id},
    ).pl()


class Scorer:
    """Each model's metric on a batch's labelled rows, every model loaded and every pair scored once."""

    def __init__(self, settings: Settings, con: duckdb.DuckDBPyConnection, paths: dict[str, Path]):
        self.settings, self.con, self.paths = settings, con, paths
        self.models: dict[str, lgbm.LoadedModel] = {}
        self.rows: dict[int, tuple[pl.DataFrame, np.ndarray]] = {}
        self.values: dict[tuple[str, int], float] = {}

    def batch(self, batch_id: int) -> tuple[pl.DataFrame, np.ndarray]:
        if batch_id not in self.rows:
            self.rows.clear()  # steps ask for batches in order: keep one in memory
            frame = labelled_rows(self.con, self.settings, batch_id)
            self.rows[batch_id] = (frame, lgbm.labels(frame, self.settings))
        return self.rows[batch_id]

    def metric(self, version: str, batch_id: int, *, own: bool = False) -> float:
        """The metric of the loop's model `version` (or, with `own`, of the always-promote baseline's
        own model for that step, where it trained one) on the labelled rows of `batch_id`."""
        key = f"{version}+own" if own and version in self.paths else version
        if (key, batch_id) not in self.values:
            frame, y = self.batch(batch_id)
            s = self.settings
            self.values[(key, batch_id)] = metric_value(
                s.primary_metric, y, self._model(key, version).predict(frame), s.decision_threshold
            )
        return self.values[(key, batch_id)]

    def _model(self, key: str, version: str) -> lgbm.LoadedModel:
        if key not in self.models:
            self.models[key] = (
                lgbm.load(self.paths[version]) if key != version else shared.load(self.settings, version)
            )
        return self.models[key]
