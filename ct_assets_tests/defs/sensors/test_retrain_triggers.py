"""Retrain triggers (issue 4): decay on fresh labels, drift, staleness, the cooldown and the daily cap,
never two CT runs in flight, and what `ct-assets status` says about them.

Each scenario starts from a champion trained on three clean batches; then a batch smaller than
[retrain] min_new_rows lands, so that only the trigger under test can ask for a run.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ct_assets.commands.runs import failure_message
from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.core.triggers.decision import TRIGGERS, RetrainDecision, retrain_decision
from ct_assets.definitions import defs
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.cli import cli, ok, one_json
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.runs import metadata, run
from ct_assets_tests.helpers.runs import tick as tick_sensor
from ct_assets_tests.helpers.servers import (
    BIN,
    server_env,
    shipped_instance_config,
    write_instance_config,
    write_workspace,
)
from ct_assets_tests.helpers.warehouse import champion

MIN_NEW_ROWS = 5000  # every batch landed after the champion is smaller than this
# Decay and drift are judged from 500 rows, so that one batch of 1,500 rows is enough evidence.
TRIGGER_CONFIG = {"min_new_rows": MIN_NEW_ROWS, "decay_min_rows": 500, "drift_min_rows": 500}
BATCH_ROWS = 1500

# ------------------------------------------------------------------------------------------- helpers


def tick(instance: dg.DagsterInstance, cursor: str | None = None) -> tuple[Any, str | None]:
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
    assert keys == {dg.AssetKey("raw_deltas"), dg.AssetKey("champion_performance")}
    return metadata(ingest, "champion_performance")


# --------------------------------------------------------------------------------------------- decay


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

    result, cursor = tick(instance)
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
    result, cursor = tick(instance)
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


# --------------------------------------------------------------------------------------------- drift


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
    result, cursor = tick(instance)
    if action == "retrain":
        assert (d.should_run, d.trigger, d.due) == (True, "drift", ["drift"])
        assert isinstance(result, dg.RunRequest)
        assert result.tags["ct_assets/trigger"] == "drift"
        assert json.loads(cursor or "")["trigger"] == "drift"
    else:
        assert (d.should_run, d.trigger, d.due) == (False, None, [])
        assert isinstance(result, dg.SkipReason)
        assert cursor is None


# ----------------------------------------------------------------------------------------- staleness


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
    result, cursor = tick(instance)
    assert isinstance(result, dg.SkipReason)
    assert cursor is None

    # New rows whose labels have not arrived yet: still nothing to learn from.
    (path,) = simulate(settings, SimulationOptions(batches=1, rows=300, seed=12))
    without_labels(path)
    assert run(instance, "ingest_job").success
    unlabelled = decision(settings)
    assert (unlabelled.newest_batch_id, unlabelled.rows_since_training) == (4, 0)
    assert unlabelled.due == [] and not unlabelled.should_run
    result, cursor = tick(instance)
    assert isinstance(result, dg.SkipReason)

    # A few labelled rows, far below every other trigger's threshold: the staleness fallback fires.
    perf = land_and_ingest(settings, instance, rows=300)
    assert perf["fresh_labelled_rows"] < 500  # too few for decay and drift to be judged
    stale = decision(settings)
    assert 0 < stale.rows_since_training < MIN_NEW_ROWS
    assert (stale.should_run, stale.trigger, stale.due) == (True, "staleness", ["staleness"])
    assert stale.reason.startswith("staleness: champion trained ")
    result, cursor = tick(instance)
    assert isinstance(result, dg.RunRequest)
    assert result.run_key == "ct-batch-5"
    assert result.tags["ct_assets/trigger"] == "staleness"
    assert json.loads(cursor or "")["trigger"] == "staleness"


# ------------------------------------------------------------------------- no storm, no starvation


@pytest.mark.slow
def test_ten_triggering_batches_are_bounded_by_the_cooldown_and_the_daily_cap_and_none_is_lost(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A virtual clock: batches land every 10 minutes; the cooldown is 30 minutes, the cap 3 a day.
    Trainings read the clock through challenger_model's utc_now, the decision through `now`."""
    from ct_assets.defs.assets import training

    settings = make_settings(
        **small(
            retrain={
                "min_new_rows": 500,
                "cooldown_minutes": 30,
                "max_trainings_per_day": 3,
                "max_champion_age_hours": 0,
            },
            # The gate is not under test here: wide tolerances, so that every challenger is promoted.
            gate={"tolerance": 0.2, "slice_tolerance": 0.5},
        )
    )
    init_warehouse(settings)
    clock = {"now": utc_now().replace(microsecond=0)}
    monkeypatch.setattr(training, "utc_now", lambda: clock["now"])
    t0 = clock["now"]
    trainings: list[tuple[datetime, int]] = []  # (virtual time, newest batch the decision saw)

    def step() -> RetrainDecision:
        d = decision(settings, now=clock["now"])
        if d.should_run:
            result = run(instance, "ct_job")
            assert result.success, f"CT run at {clock['now']}: {failure_message(result)}"
            trainings.append((clock["now"], d.newest_batch_id))
        return d

    simulate(settings, SimulationOptions(batches=3, rows=2000, seed=1))
    ingest_landed_files(settings)
    assert step().trigger == "rows"  # the first champion, at t0
    waits = []
    for i in range(1, 11):  # ten triggering batches, each above min_new_rows on its own
        clock["now"] = t0 + timedelta(minutes=10 * i)
        simulate(settings, SimulationOptions(batches=1, rows=600, seed=100 + i))
        ingest_landed_files(settings)
        d = step()
        if not d.should_run:
            assert d.due == ["rows"] and d.waiting_until is not None
            waits.append((i, d.waiting_until))

    times = [t for t, _ in trainings]
    assert times == [t0, t0 + timedelta(minutes=30), t0 + timedelta(minutes=60)]
    # While cooling down, the wait ends with the cooldown; once the cap is reached, 24 h after the oldest.
    assert dict(waits) == {
        1: t0 + timedelta(minutes=30),
        2: t0 + timedelta(minutes=30),
        4: t0 + timedelta(minutes=60),
        5: t0 + timedelta(minutes=60),
        7: t0 + timedelta(minutes=90),
        8: t0 + timedelta(minutes=90),
        9: t0 + timedelta(hours=24),
        10: t0 + timedelta(hours=24),
    }

    # Nothing is lost: the due trigger waits for the next slot, then trains on the newest batch.
    clock["now"] = t0 + timedelta(hours=24) - timedelta(minutes=1)
    assert not step().should_run
    clock["now"] = t0 + timedelta(hours=24)
    last = step()
    assert last.should_run and last.newest_batch_id == 13
    assert trainings[-1] == (t0 + timedelta(hours=24), 13)
    with connect_reader(settings) as con:
        champ = registry.champion(con)
        assert champ is not None
        record = registry.model(con, champ)
    assert record is not None and record.watermark_batch_id == 13
    assert decision(settings, now=clock["now"] + timedelta(hours=1)).due == []

    times = [t for t, _ in trainings]
    assert all(b - a >= timedelta(minutes=30) for a, b in itertools.pairwise(times))
    assert all(sum(1 for u in times if t <= u < t + timedelta(hours=24)) <= 3 for t in times)


@pytest.mark.parametrize(
    "status", [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
)
def test_the_retrain_sensor_never_requests_a_second_ct_run_while_one_is_in_flight(
    warehouse: Settings, instance: dg.DagsterInstance, status: dg.DagsterRunStatus
) -> None:
    simulate(warehouse, SimulationOptions(batches=3, rows=500, seed=4))
    ingest_landed_files(warehouse)
    assert decision(warehouse).should_run

    in_flight = instance.create_run_for_job(job_def=defs.resolve_job_def("ct_job"), status=status)
    result, cursor = tick(instance, cursor=None)
    assert isinstance(result, dg.SkipReason)
    assert "rows trigger due, but a CT run is in flight" in (result.skip_message or "")
    assert cursor is None  # nothing recorded: the batch is not marked as requested

    # More data lands meanwhile: still one run at a time.
    simulate(warehouse, SimulationOptions(batches=1, rows=500, seed=4))
    ingest_landed_files(warehouse)
    result, cursor = tick(instance, cursor=None)
    assert isinstance(result, dg.SkipReason)

    # The run in flight ends: the next tick requests one run, for everything ingested by then.
    instance.report_run_canceled(in_flight)
    result, cursor = tick(instance, cursor=None)
    assert isinstance(result, dg.RunRequest)
    assert result.run_key == "ct-batch-4"
    assert json.loads(cursor or "")["requested_batch"] == 4


@pytest.mark.slow
def test_a_ct_run_waiting_in_the_shipped_run_queue_holds_the_retrain_sensor(
    warehouse: Settings, project: Path
) -> None:
    """Submitted through the instance config ct_assets ships (a run queue) with no daemon to dequeue it,
    a CT run stays QUEUED: due triggers wait for it instead of queueing a second one."""
    home = Path(os.environ["DAGSTER_HOME"])
    write_instance_config(home, shipped_instance_config())
    write_workspace(project)
    simulate(warehouse, SimulationOptions(batches=3, rows=500, seed=4))
    ingest_landed_files(warehouse)
    launch = subprocess.run(
        [str(BIN / "dagster"), "job", "launch", "-j", "ct_job", "-w", "workspace.yaml"],
        cwd=project,
        env=server_env(project, home, warehouse.source),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert launch.returncode == 0, launch.stderr[-2000:]
    with dg.DagsterInstance.get() as inst:
        (queued,) = inst.get_runs(filters=dg.RunsFilter(job_name="ct_job"))
        assert queued.status == dg.DagsterRunStatus.QUEUED
        result, cursor = tick(inst)
        assert isinstance(result, dg.SkipReason)
        assert "a CT run is in flight" in (result.skip_message or "")
        assert cursor is None
        inst.report_run_canceled(queued)
        result, cursor = tick(inst)
    assert isinstance(result, dg.RunRequest)
    assert result.run_key == "ct-batch-3"


# -------------------------------------------------------------------------------------------- status


@pytest.mark.slow
def test_status_shows_every_trigger_and_when_the_cooldown_ends(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, project: Path
) -> None:
    settings = with_champion(make_settings, instance, cooldown_minutes=60, min_new_rows=1000)
    with connect_reader(settings) as con:
        trained_at = registry.model(con, "v0001").created_at  # type: ignore[union-attr]
    simulate(settings, SimulationOptions(batches=1, rows=1200, seed=13))
    ingest_landed_files(settings)

    out = one_json(ok(cli(project, "status", "--json")))
    assert set(out["triggers"]) == set(TRIGGERS)
    assert all(isinstance(text, str) and text for text in out["triggers"].values())
    assert out["triggers"]["rows"].startswith(
        f"{out['rows_since_training']} labelled rows since champion v0001"
    )
    assert out["rows_since_training"] >= 1000
    assert out["retrain_due"] is False
    assert out["retrain_trigger"] is None
    until = trained_at + timedelta(minutes=60)
    assert out["retrain_waiting_until"] == until.isoformat(sep=" ", timespec="seconds")
    assert "cooling down until" in out["retrain_reason"]
    assert out["retrain_reason"].startswith("rows trigger due")

    text = cli(project, "status")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    for name in TRIGGERS:
        assert sum(1 for line in lines if line.startswith(f"  {name}: ")) == 1, text.stdout
    assert any("cooling down until" in line for line in lines)
