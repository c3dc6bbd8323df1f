"""`[cluster] executor = "dask"` (issue 14): a run's steps execute in `dask worker` processes, and two
runs of the same job started together both execute every step (dagster-dask's own executor gives the
second run the first one's task keys: it executes nothing and still succeeds, dagster-io/dagster#21418).
The default stays the in-process executor."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from ct_assets.config import Settings
from ct_assets.store.warehouse import init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.dask import absolute_paths, dask_cluster, launch_job, step_pids

pytest.importorskip("dagster_dask", reason="dagster-dask is not installed (the cluster venv has it)")

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

RUN_TIMEOUT = 300


def test_two_runs_of_one_job_at_once_both_execute_every_step_on_the_workers(
    make_settings: Callable[..., Settings], project: Path, tmp_path: Path
) -> None:
    settings = make_settings(**small(cluster={"executor": "dask"}, paths=absolute_paths(project)))
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=2, rows=500, seed=4))
    instance = dg.DagsterInstance.get()  # its storage created here, not by two runs at once
    assert instance.get_runs() == []
    with dask_cluster(tmp_path / "dask", workers=2) as cluster:
        logs = [tmp_path / f"run{i}.log" for i in (1, 2)]
        runs = [launch_job(project, "ingest_job", cluster.address, log) for log in logs]
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
