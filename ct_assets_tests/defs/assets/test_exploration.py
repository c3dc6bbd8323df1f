"""Feedback loops (issue 4): the exploration flag column, its share in the training data set with a
warning check below the target, and exploration rows up-weighted in training."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ct_assets.config import Settings
from ct_assets.core.datasets.training import DatasetInfo, read_split
from ct_assets.core.modeling import model as lgbm
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets.tools.reproduce import reproduce
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.cli import cli
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.runs import check, metadata, run

FLAG = "explored"
TARGET = 0.2
CHECK = "training_dataset_exploration_share"


def exploring(**override: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The small configuration with an exploration flag column and a 20 % target."""
    tables = small(columns={"exploration": FLAG}, dataset={"exploration_target": TARGET})
    for name, values in override.items():
        tables[name] = {**tables.get(name, {}), **values}
    return tables


@pytest.mark.parametrize(("share", "passes"), [(0.05, False), (0.3, True)])
def test_the_exploration_share_is_reported_and_warned_about_below_its_target(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, share: float, passes: bool
) -> None:
    settings = make_settings(**exploring())
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=3, rows=2000, seed=1, exploration=share))
    assert run(instance, "ingest_job").success
    result = run(instance, "ct_job", selection=["golden_dataset", "training_dataset"])
    assert result.success  # a warning never stops the run

    reported = metadata(result, "training_dataset")["exploration_share"]
    with connect_reader(settings) as con:
        train = read_split(
            con, settings, DatasetInfo.from_json(result.output_for_node("training_dataset")), "train"
        )
    actual = train[FLAG].cast(float).mean()
    assert isinstance(reported, float)
    assert reported == pytest.approx(actual, abs=1e-4)
    assert reported == pytest.approx(share, abs=0.02)

    evaluation = check(result, CHECK)
    assert evaluation.passed is passes
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert (
        evaluation.description == f"exploration rows are {reported:.2%} of the training rows; target 20.00%"
    )
    assert evaluation.metadata["target"].value == TARGET


def test_without_an_exploration_column_the_check_passes_and_says_so(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    settings = make_settings(**small(dataset={"exploration_target": TARGET}))
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=3, rows=1000, seed=1))
    assert run(instance, "ingest_job").success
    result = run(instance, "ct_job", selection=["golden_dataset", "training_dataset"])
    assert metadata(result, "training_dataset")["exploration_share"] == "no exploration column configured"
    evaluation = check(result, CHECK)
    assert evaluation.passed
    assert "no exploration column configured" in (evaluation.description or "")


def test_up_weighted_exploration_rows_change_the_model_and_the_card_records_the_weight(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    plain = make_settings(**exploring())
    init_warehouse(plain)
    simulate(plain, SimulationOptions(batches=3, rows=2000, seed=1, exploration=0.3))
    assert run(instance, "ingest_job").success
    steps = ["golden_dataset", "training_dataset", "challenger_model"]

    assert run(instance, "ct_job", selection=steps).success  # v0001, weight 1
    make_settings(**exploring(dataset={"exploration_weight": 3.0}))
    assert run(instance, "ct_job", selection=steps).success  # v0002, weight 3
    make_settings(**exploring())
    assert run(instance, "ct_job", selection=steps).success  # v0003, weight 1 again

    models = plain.paths.models
    text = {v: (models / v / "model.txt").read_text() for v in ("v0001", "v0002", "v0003")}
    cards = {v: json.loads((models / v / "card.json").read_text()) for v in text}
    assert {v: c["exploration_weight"] for v, c in cards.items()} == {
        "v0001": 1.0,
        "v0002": 3.0,
        "v0003": 1.0,
    }
    assert len({c["data_hash"] for c in cards.values()}) == 1  # the same rows each time
    assert text["v0001"] == text["v0003"]  # deterministic: only the weight differs
    assert text["v0002"] != text["v0001"]

    # Reproducing the weighted model under a config whose weight is 1 uses the weight in its card.
    again = reproduce(plain, "v0002")
    assert again.identical, again.reason
    assert lgbm.load_version(models, "v0002").card["exploration_weight"] == 3.0


def test_simulate_exploration_without_a_configured_column_is_refused_in_one_line(
    make_settings: Callable[..., Settings], project: Path
) -> None:
    settings = make_settings(**small())
    proc = cli(project, "simulate", "--batches", "1", "--rows", "10", "--exploration", "0.1", timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "ct-assets: error: --exploration needs a config whose [columns] exploration names the flag column"
    ]
    assert not settings.paths.landing.exists() or not any(settings.paths.landing.iterdir())
