"""Runs left STARTED: only those of a `ct-assets` process that is gone are marked failed (by the next
sensor tick), the landing sensor waits while that process lives, and runs without the CLI's tags are
left to Dagster's run monitoring."""

import socket
import subprocess

import dagster as dg
import pytest

from ct_assets.commands import runs
from ct_assets.common import run_processes
from ct_assets.config import Settings
from ct_assets.definitions import defs
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.runs import tick as tick_sensor

pytestmark = pytest.mark.slow


def status(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    run = instance.get_run_by_id(run_id)
    assert run is not None, run_id
    return run.status


def test_only_runs_of_dead_processes_are_recovered(warehouse: Settings, instance: dg.DagsterInstance) -> None:
    """A STARTED run tagged by a `ct-assets` process that is still alive keeps the landing sensor
    waiting; once that process is gone, the next tick marks the run failed and requests an ingest run.
    Runs without the CLI's tags (launched by the daemon) are left to Dagster's run monitoring."""
    simulate(warehouse, SimulationOptions(batches=1, rows=300, seed=3))
    job = defs.resolve_job_def("ingest_job")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        tags = {runs.PID_TAG: str(sleeper.pid), runs.HOST_TAG: socket.gethostname()}
        held = instance.create_run_for_job(job_def=job, status=dg.DagsterRunStatus.STARTED, tags=tags)
        waiting, _ = tick_sensor("landing_sensor", instance)
        assert isinstance(waiting, dg.SkipReason) and "in flight" in (waiting.skip_message or "")
        assert status(instance, held.run_id) == dg.DagsterRunStatus.STARTED
    finally:
        sleeper.kill()
        sleeper.wait()
    assert isinstance(tick_sensor("landing_sensor", instance)[0], dg.RunRequest)
    assert status(instance, held.run_id) == dg.DagsterRunStatus.FAILURE
    assert runs.recover_dead_runs(instance) == []  # nothing left to recover
    other = instance.create_run_for_job(job_def=job, status=dg.DagsterRunStatus.STARTED)
    assert runs.recover_dead_runs(instance) == []
    assert status(instance, other.run_id) == dg.DagsterRunStatus.STARTED


def test_the_markers_of_dead_processes_go_once_their_runs_are_failed(
    warehouse: Settings, instance: dg.DagsterInstance
) -> None:
    """A process that ran a run and died leaves its marker; recovery fails its run and removes the
    marker, and leaves the marker of a process still alive."""
    home = run_processes.markers_home(instance.root_directory)
    job = defs.resolve_job_def("ingest_job")
    gone = subprocess.Popen(["true"])
    gone.wait()
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        folder = home / run_processes.MARKERS
        folder.mkdir()
        markers = {p.pid: folder / f"{socket.gethostname()}-{p.pid}" for p in (gone, sleeper)}
        for marker in markers.values():
            marker.touch()
        tags = {runs.PID_TAG: str(gone.pid), runs.HOST_TAG: socket.gethostname()}
        left = instance.create_run_for_job(job_def=job, status=dg.DagsterRunStatus.STARTED, tags=tags)
        assert run_processes.dead_markers(home) == [markers[gone.pid]]
        assert runs.recover_dead_runs(instance) == [left.run_id]
        assert status(instance, left.run_id) == dg.DagsterRunStatus.FAILURE
        assert not markers[gone.pid].exists()
        assert markers[sleeper.pid].exists()
    finally:
        sleeper.kill()
        sleeper.wait()
