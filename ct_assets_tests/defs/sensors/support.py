"""Shared by the sensor tests: landing batches, the retrain decision and sensor tick, and a champion
trained on three clean batches with a smaller batch landed after it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import dagster as dg

from ct_assets.config import Settings
from ct_assets.core.triggers.decision import RetrainDecision, retrain_decision
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.runs import metadata, run
from ct_assets_tests.helpers.runs import tick as tick_sensor
from ct_assets_tests.helpers.warehouse import champion

MIN_NEW_ROWS = 5000  # every batch landed after the champion is smaller than this
# Decay and drift are judged from 500 rows, so that one batch of 1,500 rows is enough evidence.
TRIGGER_CONFIG = {"min_new_rows": MIN_NEW_ROWS, "decay_min_rows": 500, "drift_min_rows": 500}
BATCH_ROWS = 1500


def tick_retrain(instance: dg.DagsterInstance, cursor: str | None = None) -> tuple[Any, str | None]:
    """Evaluate retrain_sensor once, as the daemon would; return its result and the cursor it leaves."""
    return tick_sensor("retrain_sensor", instance, cursor)


def decision(settings: Settings, now: datetime | None = None) -> RetrainDecision:
    with connect_reader(settings) as con:
        return retrain_decision(con, settings, now=now)


def drift_table(perf: dict[str, Any]) -> dict[str, tuple[float, bool]]:
    return {r.data["feature"]: (r.data["psi"], r.data["drifted"]) for r in perf["drift"].records}


def with_champion(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, **retrain: Any
) -> Settings:
    """A warehouse with three clean batches and champion v0001 trained on them."""
    settings = make_settings(**small(retrain={**TRIGGER_CONFIG, **retrain}))
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=3, rows=2000, seed=1))
    assert run(instance, "ingest_job").success
    assert run(instance, "ct_job").success
    assert champion(settings) == "v0001"
    return settings


def land_and_ingest(
    settings: Settings, instance: dg.DagsterInstance, *, drift: float = 0.0, rows: int = BATCH_ROWS
) -> dict[str, Any]:
    """One more batch through ingest_job; returns champion_performance's metadata."""
    simulate(settings, SimulationOptions(batches=1, rows=rows, seed=11, drift=drift))
    ingest = run(instance, "ingest_job")
    assert ingest.success
    keys = {m.asset_key for m in ingest.get_asset_materialization_events()}
    assert keys == {
        dg.AssetKey("raw_deltas"),
        dg.AssetKey("predictions"),
        dg.AssetKey("champion_performance"),
    }
    return metadata(ingest, "champion_performance")


def land(settings: Settings, batches: int, rows: int, seed: int) -> None:
    simulate(settings, SimulationOptions(batches=batches, rows=rows, seed=seed))
