"""Guardrails on cost (issue 4): the training time budget, the in-process wall-clock guard, one training
at a time, and the shipped instance config that lets run monitoring stop daemon-launched CT runs (the
daemon itself: e2e/test_run_monitoring.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from ct_assets.commands.runs import failure_message
from ct_assets.config import Settings
from ct_assets.store.warehouse import init_warehouse, writer_lock
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.cli import cli
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.runs import CT_STEPS, failed_steps, materialized, run
from ct_assets_tests.helpers.servers import shipped_instance_config
from ct_assets_tests.helpers.warehouse import models_state

# ------------------------------------------------------------------------------------------- helpers


@pytest.fixture
def champion_v1(make_settings: Callable[..., Settings], instance: dg.DagsterInstance) -> Settings:
    """Champion v0001 on three batches, and one more batch ingested since (something to train on)."""
    settings = make_settings(**small())
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=3, rows=2000, seed=1))
    assert run(instance, "ingest_job").success
    assert run(instance, "ct_job").success
    simulate(settings, SimulationOptions(batches=1, rows=2000, seed=2))
    assert run(instance, "ingest_job").success
    assert models_state(settings) == ("v0001", ["v0001"], ["v0001"])
    return settings


# ------------------------------------------------------------------------------------ training budget


def test_a_tiny_training_budget_stops_the_challenger_and_keeps_the_champion(
    champion_v1: Settings, make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    settings = make_settings(**small(guardrails={"max_training_seconds": 0.001}))
    result = run(instance, "ct_job", selection=CT_STEPS)

    assert not result.success
    assert failed_steps(result) == ["challenger_model"]
    message = failure_message(result)
    assert message.startswith(
        "challenger_model: training stopped: its time budget of 0.001 s "
        "([guardrails] max_training_seconds = 0.001) ran out after "
    )
    assert message.endswith("; no model was saved")
    assert materialized(result) == {"training_dataset"}
    assert models_state(settings) == ("v0001", ["v0001"], ["v0001"])  # nothing half-written either

    # The same run with the default budget trains and registers a challenger: the budget made the difference.
    make_settings(**small())
    assert "challenger_model" in materialized(run(instance, "ct_job", selection=CT_STEPS))
    assert models_state(settings)[1] == ["v0001", "v0002"]


@pytest.mark.slow
def test_cycle_over_its_training_budget_fails_with_one_line_and_the_champion_unchanged(
    champion_v1: Settings, make_settings: Callable[..., Settings], project: Path
) -> None:
    settings = make_settings(**small(guardrails={"max_training_seconds": 0.001}))
    proc = cli(project, "cycle", "--force", "--json")

    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    (line,) = [x for x in proc.stdout.splitlines() if x.strip()]
    out = json.loads(line)
    assert out["verdict"] == "failed"
    assert (out["champion_version"], out["challenger_version"]) == ("v0001", None)
    assert "time budget of 0.001 s ([guardrails] max_training_seconds = 0.001) ran out" in out["error"]
    errors = [x for x in proc.stderr.splitlines() if x.startswith("ct-assets: error: ")]
    assert errors == [f"ct-assets: error: the CT run failed: {out['error']}"]
    assert models_state(settings) == ("v0001", ["v0001"], ["v0001"])


# ------------------------------------------------------------------------------- wall-clock guard


HOLD_LIMIT_SECONDS = 120  # a holder whose condition never comes true lets go then, and the test fails


@dataclass
class Hold:
    """A slow writer holding the warehouse's writer lock in a thread until a condition is true."""

    thread: threading.Thread
    released: float | None = None  # time.time() just before it let go
    gave_up: bool = False  # let go after HOLD_LIMIT_SECONDS, the condition still false


@pytest.fixture
def writer_held_until(champion_v1: Settings) -> Iterator[Callable[[Callable[[], bool]], Hold]]:
    """hold(until): another holder takes the warehouse's writer lock now and keeps it until `until()` is
    true (asked every 50 ms), as a slow writer would."""
    holds: list[Hold] = []

    def hold(until: Callable[[], bool]) -> Hold:
        taken = threading.Event()

        def holder() -> None:
            deadline = time.monotonic() + HOLD_LIMIT_SECONDS
            with writer_lock(champion_v1.paths.warehouse, 30):
                taken.set()
                while not until():
                    if time.monotonic() > deadline:
                        held.gave_up = True
                        break
                    time.sleep(0.05)
                held.released = time.time()

        held = Hold(threading.Thread(target=holder, daemon=True))
        held.thread.start()
        assert taken.wait(10)
        holds.append(held)
        return held

    yield hold
    for held in holds:
        held.thread.join(HOLD_LIMIT_SECONDS + 30)


def step_waited_past(
    instance: dg.DagsterInstance, earlier_runs: set[str], step: str, seconds: float
) -> Callable[[], bool]:
    """True once the first run not in `earlier_runs` has started `step` and has been running (since its
    RUN_START, the time the wall-clock guard counts from) for more than `seconds`."""

    def ready() -> bool:
        try:
            new = [r.run_id for r in instance.get_runs(limit=5) if r.run_id not in earlier_runs]
            if not new:
                return False
            started = instance.get_run_stats(new[0]).start_time
            steps = instance.all_logs(new[0], of_type=dg.DagsterEventType.STEP_START)
        except Exception:  # the run's storage being written at this very moment: ask again
            return False
        return (
            started is not None and any(e.step_key == step for e in steps) and time.time() - started > seconds
        )

    return ready


def test_the_wall_clock_guard_stops_an_in_process_ct_run_with_its_reason(
    champion_v1: Settings,
    make_settings: Callable[..., Settings],
    instance: dg.DagsterInstance,
    writer_held_until: Callable[[Callable[[], bool]], Hold],
) -> None:
    """The run's first step waits for a slow writer until the run has been going for longer than
    max_run_seconds = 1 (half a second longer); then the next step refuses to start.

    The writer is released on that condition, not after a fixed time: a fixed hold that began before
    the run could run out while a slow run setup was still going on, and the guard would then stop a
    later step instead."""
    settings = make_settings(**small(guardrails={"max_run_seconds": 1}))
    earlier = {r.run_id for r in instance.get_runs()}
    held = writer_held_until(step_waited_past(instance, earlier, "golden_dataset", 1.5))
    result = run(instance, "ct_job", selection=["golden_dataset", *CT_STEPS])
    held.thread.join(HOLD_LIMIT_SECONDS + 30)

    assert not held.gave_up, "the run never started golden_dataset while the writer was held"
    assert held.released is not None
    (golden_done,) = [
        e
        for e in instance.all_logs(result.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
        if e.step_key == "golden_dataset"
    ]
    assert golden_done.timestamp >= held.released  # it did wait for the slow writer
    assert not result.success
    assert failed_steps(result) == ["training_dataset"]
    message = failure_message(result)
    assert "CT run stopped: it has run " in message
    assert (
        "past its wall-clock budget ([guardrails] max_run_seconds = 1); the champion is unchanged" in message
    )
    assert materialized(result) == {"golden_dataset"}
    assert models_state(settings) == ("v0001", ["v0001"], ["v0001"])


def test_the_wall_clock_guard_reason_is_named_when_it_cuts_training_short(
    champion_v1: Settings, make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    """Training is capped by what is left of max_run_seconds (2 s here), far below max_training_seconds
    (900 s): the reason given must name the wall-clock guard that stopped it, not an unnamed budget."""
    settings = make_settings(
        **small(guardrails={"max_run_seconds": 2}, training={"num_iterations": 1_000_000})
    )
    started = time.monotonic()
    result = run(instance, "ct_job", selection=CT_STEPS)

    assert time.monotonic() - started < 60
    assert not result.success
    assert failed_steps(result) == ["challenger_model"]
    assert models_state(settings) == ("v0001", ["v0001"], ["v0001"])
    message = failure_message(result)
    assert "training stopped" in message
    assert "max_run_seconds" in message, message


# ------------------------------------------------------------------------------ one training at a time

TRAIN_AND_RECORD = """
import json, os, sys, time
from ct_assets.core.modeling import model as lgbm

spans, real_train = sys.argv[1], lgbm.train

def timed_train(*args, **kwargs):
    start = time.time()
    try:
        return real_train(*args, **kwargs)
    finally:
        with open(spans, "a") as f:
            f.write(json.dumps({"pid": os.getpid(), "start": start, "end": time.time()}) + "\\n")

lgbm.train = timed_train
from ct_assets.commands.runs import run_job

result = run_job("ct_job", asset_selection=["training_dataset", "challenger_model"])
print(json.dumps({"success": result.success, "run_id": result.run_id}))
"""


@pytest.mark.slow
def test_two_concurrent_ct_runs_never_train_at_the_same_time(
    champion_v1: Settings, make_settings: Callable[..., Settings], project: Path
) -> None:
    """Two processes start a CT run at once (as two `cycle`s would); each training takes seconds, so
    without the training lock they would overlap."""
    settings = make_settings(**small(training={"num_iterations": 3000}))
    spans_file = project / "spans.jsonl"
    env = {**os.environ, "CT_ASSETS_CONFIG": str(settings.source)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TRAIN_AND_RECORD, str(spans_file)],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr[-2000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    assert all(o["success"] for o in outs), outs

    spans = sorted(
        (json.loads(line) for line in spans_file.read_text().splitlines()), key=lambda s: s["start"]
    )
    assert len(spans) == 2 and spans[0]["pid"] != spans[1]["pid"]
    first, second = spans
    assert first["end"] - first["start"] > 1.0  # long enough to overlap, were they not serialized
    assert second["start"] >= first["end"], f"trainings overlap: {spans}"
    _, versions, folders = models_state(settings)
    assert versions == folders == ["v0001", "v0002", "v0003"]


# ------------------------------------------------------------------- run monitoring (instance config)


def test_the_shipped_instance_config_monitors_runs_and_lets_one_ct_run_at_a_time() -> None:
    from ct_assets.defs.constants import CT_RUN_TAG
    from ct_assets.defs.jobs import ct_job

    shipped = shipped_instance_config()
    assert shipped["run_monitoring"]["enabled"] is True
    assert {"key": CT_RUN_TAG, "limit": 1} in shipped["run_queue"]["tag_concurrency_limits"]
    # Every CT run carries the tag the queue limits. The max runtime run monitoring enforces is set by the
    # retrain sensor on the runs the daemon launches (test_sensors checks it), never on the job, so an
    # in-process `cycle` run is not marked failed by run monitoring while its process goes on.
    assert ct_job.tags[CT_RUN_TAG] == "true"
    assert "dagster/max_runtime" not in ct_job.tags
