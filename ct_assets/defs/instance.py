"""The Dagster instance at DAGSTER_HOME, and recovery of runs whose process died.

Runs executed in-process (by the CLI) or by a run worker the daemon launched are tagged with their
pid and host; a run left STARTED by a killed process would otherwise block the sensors forever.
"""

from __future__ import annotations

import os
import socket
from importlib import resources
from pathlib import Path

import dagster as dg

from ct_assets.defs.constants import HOST_TAG, PID_TAG

DEFAULT_DAGSTER_HOME = "data/dagster"


def ensure_dagster_home() -> Path:
    """Make DAGSTER_HOME absolute (default: ./data/dagster) and give it the instance config we ship."""
    raw = os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME
    home = Path(raw).expanduser()
    if not home.is_absolute():
        home = Path.cwd() / home
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(resources.files("ct_assets").joinpath("dagster_instance.yaml").read_text())
    return home


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dead_runs(inst: dg.DagsterInstance) -> list[str]:
    """Mark failed the runs executed on this machine (by the CLI in-process, or by a run worker the
    daemon launched: both are tagged with their pid and host) whose process is gone (killed mid-run):
    nothing then waits on them, and the UI tells the truth. Returns their run ids."""
    host = socket.gethostname()
    dead = []
    for run in inst.get_runs(
        filters=dg.RunsFilter(statuses=list(STALE_STATUSES), tags={HOST_TAG: host}), limit=100
    ):
        pid = run.tags.get(PID_TAG)
        if pid and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            inst.report_run_failed(
                run, f"process {pid} that ran it is gone (killed); marked failed by ct-assets"
            )
            dead.append(run.run_id)
    return dead
