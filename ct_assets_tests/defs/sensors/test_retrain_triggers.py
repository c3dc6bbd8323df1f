"""Retrain triggers (issue 4) through ingest runs and retrain_sensor ticks: decay on fresh labels (also as
`ct-assets cycle` reports it), drift acted on or only reported, and staleness once new labels exist.

Each scenario starts from a champion trained on three clean batches; then a batch smaller than
[retrain] min_new_rows lands, so that only the trigger under test can ask for a run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.defs.sensors.support import (
    BATCH_ROWS,
    MIN_NEW_ROWS,
    TRIGGER_CONFIG,
    decision,
    drift_table,
    land_and_ingest,
    tick_retrain,
    with_champion,
)
from ct_assets_tests.helpers.cli import cli, ok, one_json
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.runs import run


def test_a_drifted_batch_below_the_row_threshold_that_degrades_the_champion_requests_a_decay_run(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    settings = with_champion(make_settings, instance)
    perf = land_and_ingest(settings, instance, drift=1.0)

    # champion_performance scored the champion on the fresh labels and found it decayed.
    assert perf["champion"] == "v0001"
    assert 500 <= perf["fresh_labelled_rows"] < MIN_NEW_ROWS
    assert perf["decay"].startswith("DECAYED: roc_auc ")
    assert "worse than its validation figure" in perf["decay"]
    assert perf["roc_auc_on_fresh_labels"] < perf["validation_reference"] - 0.03
    assert len(perf["over_time"].records) == 1  # one score of this champion so far

    d = decision(settings)
    assert d.rows_since_training == perf["fresh_labelled_rows"] < d.threshold
    assert d.due == ["decay"]  # drift is only reported (drift_action = "report"), rows are too few
    assert (d.should_run, d.trigger) == (True, "decay")

    result, cursor = tick_retrain(instance)
    assert isinstance(result, dg.RunRequest)
    assert result.run_key == "ct-batch-4"
    assert result.tags["ct_assets/trigger"] == "decay"
    assert result.tags["ct_assets/reason"].startswith("decay: DECAYED: roc_auc ")
    assert result.tags["dagster/max_runtime"] == str(int(settings.guardrails.max_run_seconds))
    assert json.loads(cursor or "") == {
        "requested_batch": 4,
        "rows_since_training": d.rows_since_training,
        "trigger": "decay",
    }


@pytest.mark.parametrize("drift", [0.0, 0.05])
def test_a_batch_drifting_less_than_the_effect_size_neither_decays_nor_drifts_nor_runs(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, drift: float
) -> None:
    settings = with_champion(make_settings, instance)
    perf = land_and_ingest(settings, instance, drift=drift)

    assert 500 <= perf["fresh_labelled_rows"] < MIN_NEW_ROWS
    assert not perf["decay"].startswith("DECAYED")
    assert perf["roc_auc_on_fresh_labels"] >= perf["validation_reference"] - 0.03
    assert perf["drifted_features"] == "none"
    psi = drift_table(perf)
    assert set(psi) == set(settings.feature_names)
    assert max(p for p, _ in psi.values()) < settings.retrain.drift_psi
    assert not any(flag for _, flag in psi.values())

    d = decision(settings)
    assert (d.should_run, d.trigger, d.due) == (False, None, [])
    result, cursor = tick_retrain(instance)
    assert isinstance(result, dg.SkipReason)
    assert (result.skip_message or "").startswith(f"no trigger due: {d.rows_since_training} labelled rows")
    assert cursor is None


@pytest.mark.slow
def test_cycle_reports_the_decay_trigger_and_tags_its_ct_run(
    make_settings: Callable[..., Settings], project: Path
) -> None:
    make_settings(**small(retrain=TRIGGER_CONFIG))
    assert cli(project, "init").returncode == 0
    assert cli(project, "simulate", "--batches", "3", "--rows", "2000", "--seed", "1").returncode == 0
    first = one_json(ok(cli(project, "cycle", "--json")))
    assert (first["verdict"], first["champion_version"]) == ("promoted", "v0001")
    assert first["trigger"]["trigger"] == "rows"

    simulate_args = ("--batches", "1", "--rows", str(BATCH_ROWS), "--seed", "11", "--drift", "1")
    assert cli(project, "simulate", *simulate_args).returncode == 0
    out = one_json(ok(cli(project, "cycle", "--json")))
    assert out["ingested_files"] == 1
    assert out["trigger"]["trigger"] == "decay"
    assert out["trigger"]["should_run"] is True
    assert out["trigger"]["rows_since_training"] < MIN_NEW_ROWS
    assert out["challenger_version"] == "v0002"
    assert out["verdict"] in ("promoted", "blocked")

    with dg.DagsterInstance.get() as inst:
        ct_run = inst.get_run_by_id(out["runs"]["ct"])
    assert ct_run is not None
    assert ct_run.tags["ct_assets/trigger"] == "decay"
    assert ct_run.tags["ct_assets/reason"].startswith("decay: DECAYED")


@pytest.mark.parametrize("action", ["retrain", "report"])
def test_a_clearly_drifted_batch_triggers_a_drift_run_or_is_only_reported(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, action: str
) -> None:
    # Decay is not judged here (it needs more rows than land), so that drift alone speaks.
    settings = with_champion(make_settings, instance, drift_action=action, decay_min_rows=100_000)
    perf = land_and_ingest(settings, instance, drift=1.0)

    assert "decay is judged from 100000" in perf["decay"]
    psi = drift_table(perf)
    drifted = sorted(f for f, (_, flag) in psi.items() if flag)
    assert "support_calls" in drifted  # the simulator's drift raises support calls most
    assert all(psi[f][0] >= settings.retrain.drift_psi for f in drifted)
    assert perf["drifted_features"] == ", ".join(sorted(drifted, key=lambda f: -psi[f][0]))

    d = decision(settings)
    assert d.signals["drift"].startswith("drifted: ")
    assert d.signals["drift"].endswith(f"drift_action = {action}")
    result, cursor = tick_retrain(instance)
    if action == "retrain":
        assert (d.should_run, d.trigger, d.due) == (True, "drift", ["drift"])
        assert isinstance(result, dg.RunRequest)
        assert result.tags["ct_assets/trigger"] == "drift"
        assert json.loads(cursor or "")["trigger"] == "drift"
    else:
        assert (d.should_run, d.trigger, d.due) == (False, None, [])
        assert isinstance(result, dg.SkipReason)
        assert cursor is None


def without_labels(path: Path) -> None:
    frame = pl.read_parquet(path)
    frame.with_columns(pl.lit(None, dtype=frame["label"].dtype).alias("label")).write_parquet(path)


def test_an_old_champion_is_retrained_once_new_labels_exist(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    settings = with_champion(make_settings, instance, max_champion_age_hours=0.0001)  # 0.36 s

    # Old, but nothing new to learn from: no run.
    idle = decision(settings)
    assert idle.rows_since_training == 0
    assert idle.due == [] and not idle.should_run
    assert idle.signals["staleness"].endswith("(and needs new labels)")
    result, cursor = tick_retrain(instance)
    assert isinstance(result, dg.SkipReason)
    assert cursor is None

    # New rows whose labels have not arrived yet: still nothing to learn from.
    (path,) = simulate(settings, SimulationOptions(batches=1, rows=300, seed=12))
    without_labels(path)
    assert run(instance, "ingest_job").success
    unlabelled = decision(settings)
    assert (unlabelled.newest_batch_id, unlabelled.rows_since_training) == (4, 0)
    assert unlabelled.due == [] and not unlabelled.should_run
    result, cursor = tick_retrain(instance)
    assert isinstance(result, dg.SkipReason)

    # A few labelled rows, far below every other trigger's threshold: the staleness fallback fires.
    perf = land_and_ingest(settings, instance, rows=300)
    assert perf["fresh_labelled_rows"] < 500  # too few for decay and drift to be judged
    stale = decision(settings)
    assert 0 < stale.rows_since_training < MIN_NEW_ROWS
    assert (stale.should_run, stale.trigger, stale.due) == (True, "staleness", ["staleness"])
    assert stale.reason.startswith("staleness: champion trained ")
    result, cursor = tick_retrain(instance)
    assert isinstance(result, dg.RunRequest)
    assert result.run_key == "ct-batch-5"
    assert result.tags["ct_assets/trigger"] == "staleness"
    assert json.loads(cursor or "")["trigger"] == "staleness"
