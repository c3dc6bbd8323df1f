"""Dask for the cluster tests: a scheduler and workers, each its own process in its own session and
working folder, listening on 127.0.0.1 only; and a loopback-only network namespace for the tests in
which LightGBM's collective runs (it listens on 0.0.0.0, hard-coded in its socket wrapper)."""

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ct_assets.core.modeling.dask_training import SCHEDULER_ENV
from ct_assets_tests.helpers.processes import HOST, free_port, stop_family, tail

NETNS_ENV = "CT_TESTS_IN_LOOPBACK_NETNS"  # set in the test process re-run inside the namespace
NETNS_TIMEOUT = 900  # seconds for the re-run test, start-up included
START_TIMEOUT = 60


PATHS = {  # [paths] of the default config, as file names under one folder
    "warehouse": "warehouse.duckdb",
    "landing": "landing",
    "quarantine": "quarantine",
    "archive": "archive",
    "models": "models",
    "reports": "reports",
    "state": "state",
}


def absolute_paths(project: Path) -> dict[str, str]:
    """[paths] under project/data, absolute: a step on a Dask worker runs in the worker's working
    folder, where the default relative paths would resolve."""
    return {key: str(project / "data" / name) for key, name in PATHS.items()}


@dataclass
class DaskCluster:
    address: str
    scheduler: subprocess.Popen[Any]
    workers: list[subprocess.Popen[Any]]  # by default started --no-nanny: a task runs in this very process
    folders: list[Path]  # each worker's working folder


def _start(args: list[str], cwd: Path, log: Path, env: dict[str, str]) -> subprocess.Popen[Any]:
    cwd.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        return subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


@contextlib.contextmanager
def dask_cluster(
    root: Path, workers: int = 2, env: dict[str, str] | None = None, threads: int = 1, *, nanny: bool = False
) -> Iterator[DaskCluster]:
    """`dask scheduler` and `workers` × `dask worker` (`threads` threads each) on 127.0.0.1, with the current
    environment plus $CT_DASK_SCHEDULER and `env`; waits until every worker has registered, and stops
    them all on exit. With `nanny`, each worker runs under its nanny (dask's default: a worker process
    that dies or is restarted comes back), and `workers` are the nannies' processes."""
    from distributed import Client

    dask = str(Path(sys.executable).parent / "dask")
    port = free_port()
    address = f"tcp://{HOST}:{port}"
    # The workers resolve the run's executor config too, whose address is {"env": "CT_DASK_SCHEDULER"}.
    full_env = {**os.environ, SCHEDULER_ENV: address, **(env or {})}
    procs: list[subprocess.Popen[Any]] = []
    try:
        scheduler = _start(
            [dask, "scheduler", "--host", HOST, "--port", str(port), "--no-dashboard"],
            root / "scheduler",
            root / "scheduler.log",
            full_env,
        )
        procs.append(scheduler)
        folders = [root / f"w{i + 1}" for i in range(workers)]
        for folder in folders:
            cmd = [dask, "worker", address, "--name", folder.name, "--host", HOST, "--nthreads", str(threads)]
            cmd += ["--nanny" if nanny else "--no-nanny", "--no-dashboard"]
            cmd += ["--local-directory", str(folder / "dask-scratch")]
            procs.append(_start(cmd, folder, root / f"{folder.name}.log", full_env))
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            for proc, log in zip(procs, ["scheduler", *[f.name for f in folders]], strict=True):
                if proc.poll() is not None:
                    pytest.fail(f"{log} exited with {proc.returncode}:\n{tail(root / f'{log}.log')}")
            with (
                contextlib.suppress(OSError, TimeoutError),
                Client(address, timeout=5, set_as_default=False) as client,
            ):
                client.wait_for_workers(workers, timeout=max(1.0, deadline - time.monotonic()))
                break
            if time.monotonic() > deadline:
                pytest.fail(f"the Dask workers did not register in {START_TIMEOUT} s")
            time.sleep(0.3)
        yield DaskCluster(address, scheduler, procs[1:], folders)
    finally:
        for proc in reversed(procs):
            stop_family(proc)


def launch_job(project: Path, job: str, scheduler: str, log: Path) -> subprocess.Popen[str]:
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


def inside_loopback_netns(request: pytest.FixtureRequest) -> bool:
    """True when this test process runs in a network namespace whose only interface is loopback.
    Otherwise runs this one test again in such a namespace (`unshare --net --pid`, then `ip link set lo
    up`; needs root or CAP_SYS_ADMIN), fails unless it passed there, and returns False: the caller returns."""
    if os.environ.get(NETNS_ENV) == "1":
        return True
    probe = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--mount-proc", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.fail(
            "LightGBM's collective listens on 0.0.0.0, so this test runs it in a loopback-only network "
            f"namespace, which `unshare --net` refused here: {probe.stderr.strip()[:300]}"
        )
    script = 'ip link set lo up && exec "$0" "$@"'
    args = [sys.executable, "-m", "pytest", "-q", "-x", request.node.nodeid]
    # A pid namespace too: when the re-run test ends, or is killed on time-out, the kernel kills every
    # process left in it (the Dask scheduler and workers run in sessions of their own).
    isolate = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    proc = subprocess.run(
        [*isolate, "sh", "-c", script, *args],
        cwd=request.config.rootpath,
        env={**os.environ, NETNS_ENV: "1"},
        capture_output=True,
        text=True,
        timeout=NETNS_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, (
        f"in the loopback-only namespace the test exited {proc.returncode}:\n"
        f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    )
    assert " passed" in proc.stdout and " skipped" not in proc.stdout, proc.stdout[-3000:]
    return False
