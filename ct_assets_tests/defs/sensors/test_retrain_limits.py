"""No storm and no starvation: the cooldown and the daily cap bound trainings and lose no due trigger,
never a second CT run while one is in flight or queued, and what `ct-assets status` says of them."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from ct_assets.commands.runs import failure_message
from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.core.triggers.decision import TRIGGERS, RetrainDecision
from ct_assets.definitions import defs
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.defs.sensors.support import decision, tick_retrain, with_champion
from ct_assets_tests.helpers.cli import cli, ok, one_json
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.runs import run
from ct_assets_tests.helpers.servers import (
    BIN,
    server_env,
    shipped_instance_config,
    write_instance_config,
    write_workspace,
)


@pytest.mark.slow
def test_ten_triggering_batches_are_bounded_by_the_cooldown_and_the_daily_cap_and_none_is_lost(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A virtual clock: batches land every 10 minutes; the cooldown is 30 minutes, the cap 3 a day.
    Trainings read the clock through the challenger module's utc_now, the decision through `now`."""
    from ct_assets.core.modeling import challenger as training

    settings = make_settings(
        **small(
            retrain={
                "min_new_rows": 500,
                "cooldown_minutes": 30,
                "max_trainings_per_day": 3,
                "max_champion_age_hours": 0,
            },
            # The gate is not under test here: wide tolerances, so that every challenger is promoted.
            gate={"tolerance": 0.2, "slice_tolerance": 0.5, "golden_tolerance": 0.5},
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
    result, cursor = tick_retrain(instance, cursor=None)
    assert isinstance(result, dg.SkipReason)
    assert "rows trigger due, but a CT run is in flight" in (result.skip_message or "")
    assert cursor is None  # nothing recorded: the batch is not marked as requested

    # More data lands meanwhile: still one run at a time.
    simulate(warehouse, SimulationOptions(batches=1, rows=500, seed=4))
    ingest_landed_files(warehouse)
    result, cursor = tick_retrain(instance, cursor=None)
    assert isinstance(result, dg.SkipReason)

    # The run in flight ends: the next tick requests one run, for everything ingested by then.
    instance.report_run_canceled(in_flight)
    result, cursor = tick_retrain(instance, cursor=None)
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
        result, cursor = tick_retrain(inst)
        assert isinstance(result, dg.SkipReason)
        assert "a CT run is in flight" in (result.skip_message or "")
        assert cursor is None
        inst.report_run_canceled(queued)
        result, cursor = tick_retrain(inst)
    assert isinstance(result, dg.RunRequest)
    assert result.run_key == "ct-batch-3"


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
