"""Reproducibility (issue 4): `ct-assets reproduce V` retrains a model the CT run registered from the
warehouse and compares the bytes; any value changed in a training row makes it not reproducible."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from ct_assets.config import Settings
from ct_assets.core.datasets.training import DatasetInfo, load_dataset
from ct_assets.store.sql import fetch_value
from ct_assets.store.warehouse import connect_reader, connect_writer, init_warehouse, transaction
from ct_assets.tools.reproduce import reproduce
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.cli import cli
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.runs import run
from ct_assets_tests.helpers.warehouse import train_row_id

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
