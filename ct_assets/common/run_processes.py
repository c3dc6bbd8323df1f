"""DAGSTER_HOME, and a marker per process executing ct_assets runs there, read without importing Dagster.

A process leaves its marker (`<DAGSTER_HOME>/ct_assets_run_processes/<host>-<pid>`) before it executes a
run (the CLI before `execute_in_process`, a run worker the daemon launched when it tags its run) and the
CLI removes it once the run has returned. A run can be left STARTED only by a process that is gone; that
process left a marker, so a command that starts no run needs Dagster's instance to look for such runs
(ct_assets.defs.instance.recover_dead_runs) only when a marker of this host names a dead process. A
marker whose process ended normally without removing it (a run worker) costs one needless look, after
which it is removed.
"""

from __future__ import annotations

import os
import socket
from importlib import resources
from pathlib import Path

DEFAULT_DAGSTER_HOME = "data/dagster"
MARKERS = "ct_assets_run_processes"


def ensure_dagster_home(dagster_db: str | None = None) -> Path:
    """Make DAGSTER_HOME absolute (default: ./data/dagster) and give it the instance config we ship;
    with `dagster_db` (cluster mode, [cluster] dagster_db), its storage in that PostgreSQL database."""
    raw = os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME
    home = Path(raw).expanduser()
    if not home.is_absolute():
        home = Path.cwd() / home
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    config = home / "dagster.yaml"
    if not config.exists():
        text = resources.files("ct_assets").joinpath("dagster_instance.yaml").read_text()
        config.write_text(text + (postgres_storage_yaml(dagster_db) if dagster_db else ""))
    return home


def postgres_storage_yaml(dagster_db: str) -> str:
    """The instance's storage in PostgreSQL (dagster-postgres), the connection from libpq's variables,
    which Dagster resolves in every process (run workers and Dask workers included). The scheme is
    required: SQLAlchemy 2 would otherwise pick psycopg 3, which dagster-postgres cannot use."""
    fields = {"username": "PGUSER", "password": "PGPASSWORD", "hostname": "PGHOST", "port": "PGPORT"}
    lines = "".join(f"      {k}: {{env: {v}}}\n" for k, v in fields.items())
    return (
        "# Cluster mode ([cluster] dagster_db): runs, events and schedules in PostgreSQL.\n"
        f"storage:\n  postgres:\n    postgres_db:\n{lines}      db_name: {dagster_db}\n"
        "      scheme: postgresql+psycopg2\n"
    )


def markers_home(root_directory: str) -> Path:
    """Where an instance's markers are: DAGSTER_HOME, as every ct_assets process resolves it (the CLI
    through `ensure_dagster_home`, the daemon and its run workers from their environment), else the
    instance's own root folder (an instance built in a test without DAGSTER_HOME)."""
    raw = os.environ.get("DAGSTER_HOME")
    return Path(raw).expanduser() if raw else Path(root_directory)


def alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leave_marker(home: Path) -> Path:
    """This process's marker, made durable before any run it executes can be STARTED."""
    folder = home / MARKERS
    folder.mkdir(exist_ok=True)
    path = folder / f"{socket.gethostname()}-{os.getpid()}"
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def remove_marker(path: Path) -> None:
    path.unlink(missing_ok=True)


def dead_markers(home: Path) -> list[Path]:
    """The markers of this host whose process is gone (its runs may have been left STARTED)."""
    folder = home / MARKERS
    if not folder.is_dir():
        return []
    prefix = socket.gethostname() + "-"
    out = []
    for path in sorted(folder.iterdir()):
        pid = path.name.removeprefix(prefix)
        if path.name.startswith(prefix) and pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            out.append(path)
    return out
