"""Cluster mode with its steps on Dask workers: the `dask worker` process running the ingest step is
SIGKILLed in the middle of the run (files claimed, some committed). Nothing shared but PostgreSQL and
the object store; each worker has its own working folder. No file is ingested twice or lost, and the
next run succeeds."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ct_assets_tests.helpers.cluster import ClusterProject, Services, cluster_extra_missing

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.skipif(bool(cluster_extra_missing()), reason=cluster_extra_missing() or "-"),
]
pytest.importorskip("dagster_dask", reason="dagster-dask is not installed (the cluster venv has it)")

FILES, ROWS = 12, 2000
RUN_TIMEOUT = 300
DAGSTER = str(Path(sys.executable).parent / "dagster")


def _launch(project: ClusterProject, scheduler: str, log: Path) -> subprocess.Popen[str]:
    """`dagster job execute` of ingest_job from the project's folder: a run on the PostgreSQL instance
    whose steps go to the Dask workers ([cluster] executor = "dask")."""
    with log.open("w") as out:
        return subprocess.Popen(
            [DAGSTER, "job", "execute", "-m", "ct_assets.definitions", "-j", "ingest_job"],
            cwd=project.folder,
            env={**project.env, "CT_DASK_SCHEDULER": scheduler},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def _worker_running(scheduler: str, step: str, timeout: float) -> int:
    """The pid of the `dask worker` process that is executing `step`'s task."""
    from distributed import Client

    deadline = time.monotonic() + timeout
    with Client(scheduler, timeout=10, set_as_default=False) as client:
        pids = client.run(os.getpid)
        while time.monotonic() < deadline:
            for address, keys in client.processing().items():
                if any(step in str(k) for k in keys):
                    return int(pids[address])
            time.sleep(0.1)
    raise AssertionError(f"no worker started {step} within {timeout:.0f} s")


def test_a_worker_killed_mid_ingest_loses_nothing_and_the_next_run_succeeds(
    tmp_path: Path, cluster_services: Services
) -> None:
    from ct_assets_tests.helpers.dask import absolute_paths, dask_cluster

    cluster = {**cluster_services.fresh(), "executor": "dask"}
    host = ClusterProject.make(
        tmp_path / "host", cluster, cluster_services, paths=absolute_paths(tmp_path / "host")
    )
    producer = ClusterProject.make(tmp_path / "producer", cluster, cluster_services)
    assert host.cli("init").returncode == 0
    out = producer.cli("simulate", "--batches", str(FILES), "--rows", str(ROWS), "--seed", "21")
    assert out.returncode == 0, out.stderr
    files = sorted((producer.folder / "data" / "landing").glob("*.parquet"))
    producer.land(files)

    with dask_cluster(tmp_path / "dask", workers=2, env=host.env) as dask:
        first = _launch(host, dask.address, tmp_path / "run1.log")
        victim = _worker_running(dask.address, "raw_deltas", timeout=RUN_TIMEOUT)
        # Mid-step: wait until the step has claimed a file, then kill its worker with no cleanup.
        deadline = time.monotonic() + RUN_TIMEOUT
        while not host.state("SELECT count(*) FROM ingest_claims")[0][0]:
            assert time.monotonic() < deadline, "the ingest step claimed no file"
            time.sleep(0.05)
        os.kill(victim, signal.SIGKILL)
        claims_at_kill = host.state("SELECT state, count(*) FROM ingest_claims GROUP BY 1 ORDER BY 1")
        first.wait(timeout=RUN_TIMEOUT)  # Dask moves the step to the other worker, or the run fails
        second = _launch(host, dask.address, tmp_path / "run2.log")
        second.wait(timeout=RUN_TIMEOUT)
        assert second.returncode == 0, (tmp_path / "run2.log").read_text()[-4000:]

    rows = host.query(
        "SELECT file_name, count(*), sum(rows) FROM ingest_log WHERE status = 'ingested' "
        "GROUP BY file_name ORDER BY file_name"
    )
    assert [r[0] for r in rows] == [f.name for f in files], rows  # none lost
    assert all(r[1] == 1 for r in rows), rows  # none twice
    total = host.query("SELECT count(*), count(DISTINCT row_id) FROM raw_deltas")[0]
    assert total[0] == total[1] == sum(r[2] for r in rows) == FILES * ROWS
    assert host.keys("landing") == [] and host.keys("archive") == [f.name for f in files]
    assert host.state("SELECT state, count(*) FROM ingest_claims GROUP BY 1") == [("done", FILES)]
    print(f"claims when the worker was killed: {claims_at_kill}; first run exit {first.returncode}")
