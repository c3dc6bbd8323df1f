"""`[cluster] executor = "dask"` (issue 14): a run's steps execute in `dask worker` processes, and two
runs of the same job started together both execute every step (dagster-dask's own executor gives the
second run the first one's task keys: it executes nothing and still succeeds, dagster-io/dagster#21418).
The default stays the in-process executor."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from ct_assets.config import Settings
from ct_assets.store.warehouse import init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.dask import dask_cluster

pytest.importorskip("dagster_dask", reason="dagster-dask is not installed (the cluster venv has it)")

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

RUN_TIMEOUT = 300
ABSOLUTE = {  # [paths] of the default config, under the project
    "warehouse": "warehouse.duckdb",
    "landing": "landing",
    "quarantine": "quarantine",
    "archive": "archive",
    "models": "models",
    "reports": "reports",
    "state": "state",
}


def launch(project: Path, job: str, scheduler: str, log: Path) -> subprocess.Popen[str]:
    """`dagster job execute` of one of the project's jobs: a run with the Definitions' executor."""
    dagster = str(Path(sys.executable).parent / "dagster")
    with log.open("w") as out:
        return subprocess.Popen(
            [dagster, "job", "execute", "-m", "ct_assets.definitions", "-j", job],
            cwd=project,
            env={**os.environ, "CT_DASK_SCHEDULER": scheduler},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def step_pids(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType) -> dict[str, int]:
    """Step key -> pid of the process that wrote the step's `kind` event."""
    records = instance.get_records_for_run(run_id, of_type=kind).records
    return {r.event_log_entry.step_key: r.event_log_entry.dagster_event.pid for r in records}  # type: ignore[misc, union-attr]


def test_two_runs_of_one_job_at_once_both_execute_every_step_on_the_workers(
    make_settings: Callable[..., Settings], project: Path, tmp_path: Path
) -> None:
    # Absolute paths: a step runs in its worker's working folder, where relative ones would resolve.
    paths = {k: str(project / "data" / v) for k, v in ABSOLUTE.items()}
    settings = make_settings(**small(cluster={"executor": "dask"}, paths=paths))
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=2, rows=500, seed=4))
    instance = dg.DagsterInstance.get()  # its storage created here, not by two runs at once
    assert instance.get_runs() == []
    with dask_cluster(tmp_path / "dask", workers=2) as cluster:
        logs = [tmp_path / f"run{i}.log" for i in (1, 2)]
        runs = [launch(project, "ingest_job", cluster.address, log) for log in logs]
        for proc, log in zip(runs, logs, strict=True):
            proc.wait(timeout=RUN_TIMEOUT)
            assert proc.returncode == 0, log.read_text()[-4000:]
        worker_pids = {p.pid for p in cluster.workers}

    records = instance.get_run_records(dg.RunsFilter(job_name="ingest_job"))
    assert len(records) == 2 and {r.dagster_run.status for r in records} == {dg.DagsterRunStatus.SUCCESS}
    plan = {"raw_deltas", "predictions", "champion_performance"}
    executed = []
    for record in records:
        run_id = record.dagster_run.run_id
        started = step_pids(instance, run_id, dg.DagsterEventType.STEP_START)
        succeeded = step_pids(instance, run_id, dg.DagsterEventType.STEP_SUCCESS)
        assert plan <= set(started) and set(succeeded) == set(started), (run_id, started, succeeded)
        # Every step ran in a `dask worker` process, none in the orchestrating `dagster job execute`.
        assert set(started.values()) <= worker_pids, (started, worker_pids)
        executed.append(set(started))
    assert executed[0] == executed[1]
