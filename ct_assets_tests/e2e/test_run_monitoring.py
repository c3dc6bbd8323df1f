"""Run monitoring end to end: the real `dagster-daemon run` on the instance config ct_assets ships cancels a
CT run it launched once it runs past its dagster/max_runtime tag, and nothing is registered."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core.datasets.golden import build_golden
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.store.warehouse import connect_writer, init_warehouse, transaction
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.servers import (
    BIN,
    daemon,
    server_env,
    shipped_instance_config,
    write_instance_config,
)
from ct_assets_tests.helpers.warehouse import models_state


def wait_until_over(inst: dg.DagsterInstance, run_id: str, log: Path) -> tuple[dg.DagsterRun, list[Any]]:
    """The run once it is finished and its worker process has exited, with its events."""
    deadline = time.monotonic() + 240
    while True:
        dagster_run = inst.get_run_by_id(run_id)
        assert dagster_run is not None
        events = list(inst.all_logs(run_id))
        if dagster_run.is_finished and any("Process for run exited" in (e.message or "") for e in events):
            return dagster_run, events
        if time.monotonic() > deadline:
            pytest.fail(
                f"run {run_id} still {dagster_run.status} after 240 s; daemon log:\n{log.read_text()[-3000:]}"
            )
        time.sleep(1)


@pytest.mark.slow
def test_a_daemon_launched_ct_run_over_its_max_runtime_is_cancelled_by_run_monitoring(
    make_settings: Callable[..., Settings], project: Path
) -> None:
    # Training would take minutes; no sensor may start runs of its own (rows threshold out of reach).
    settings = make_settings(**small(retrain={"min_new_rows": 10**9}, training={"num_iterations": 100_000}))
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=3, rows=2000, seed=1))
    ingest_landed_files(settings)
    with connect_writer(settings) as con, transaction(con):
        build_golden(con, settings, reason="test", run_id="", now=utc_now())

    # The instance config ct_assets ships, polled every second instead of every 30.
    home = project / "daemon_home"
    shipped = shipped_instance_config()
    assert shipped["run_monitoring"]["enabled"] is True
    shipped["run_monitoring"]["poll_interval_seconds"] = 1
    write_instance_config(home, shipped)
    env = server_env(project, home, settings.source)
    run_id = str(uuid.uuid4())
    with daemon(project, env):
        launch = subprocess.run(
            [
                str(BIN / "dagster"),
                *("job", "launch", "-j", "ct_job", "-w", "workspace.yaml"),
                *("--tags", json.dumps({"dagster/max_runtime": "3"}), "--run-id", run_id),
            ],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert launch.returncode == 0, launch.stderr[-2000:]

        with dg.DagsterInstance.from_config(str(home)) as inst:
            dagster_run, events = wait_until_over(inst, run_id, project / "daemon.log")

        assert dagster_run.tags["dagster/max_runtime"] == "3"
        assert dagster_run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
        kinds = [(e.dagster_event.event_type if e.dagster_event else None, e.step_key) for e in events]
        assert (dg.DagsterEventType.STEP_START, "challenger_model") in kinds  # it was training
        assert (dg.DagsterEventType.STEP_SUCCESS, "challenger_model") not in kinds
        assert any(
            "Canceling due to exceeding maximum runtime of 3 seconds" in (e.message or "") for e in events
        )
        (failure,) = [
            e
            for e in events
            if e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.RUN_FAILURE
        ]
        assert failure.message == "Exceeded maximum runtime of 3 seconds."
    assert models_state(settings) == (None, [], [])
