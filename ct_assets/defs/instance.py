"""The Dagster instance at DAGSTER_HOME, and recovery of runs whose process died.

Runs executed in-process (by the CLI) or by a run worker the daemon launched are tagged with their
pid and host; a run left STARTED by a killed process would otherwise block the sensors forever.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import dagster as dg

from ct_assets.common.run_processes import (
    alive,
    dead_markers,
    ensure_dagster_home,
    markers_home,
    remove_marker,
)
from ct_assets.defs.constants import HOST_TAG, PID_TAG

__all__ = ["ensure_dagster_home", "instance", "recover_dead_runs"]


def create_instance_storage(home: Path) -> None:
    """Create the instance's SQLite storage at `home` once, before processes that share it start
    together: a daemon and a `dagster job launch` (or the web UI) that both find no schema race to
    create it, and the loser fails in alembic's revision check."""
    with dg.DagsterInstance.from_config(str(home)):
        pass


def instance() -> dg.DagsterInstance:
    ensure_dagster_home()
    return dg.DagsterInstance.get()


STALE_STATUSES = (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING)
LIMIT = 100  # stale runs looked at per call


def recover_dead_runs(inst: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs executed on this machine (by the CLI in-process, or by a run worker the
    daemon launched: both are tagged with their pid and host) whose process is gone (killed mid-run):
    nothing then waits on them, and the UI tells the truth. Returns their run ids. The markers of the
    dead processes (ct_assets.common.run_processes) are removed once their runs are failed."""
    gone = dead_markers(markers_home(inst.root_directory))
    host = socket.gethostname()
    dead = []
    stale = inst.get_runs(
        filters=dg.RunsFilter(statuses=list(STALE_STATUSES), tags={HOST_TAG: host}), limit=LIMIT
    )
    for run in stale:
        pid = run.tags.get(PID_TAG)
        if pid and pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            inst.report_run_failed(
                run, f"process {pid} that ran it is gone (killed); marked failed by ct-assets"
            )
            dead.append(run.run_id)
    if len(stale) < LIMIT:  # every stale run was seen: the dead processes have none left
        for marker in gone:
            remove_marker(marker)
    return dead
