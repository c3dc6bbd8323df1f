"""Cluster mode, `[training] engine = "dask"`: one of two worker hosts (a `dask worker` under its nanny,
as dask starts them by default) is SIGKILLed, nanny and all, as LightGBM starts on both workers (each
with the share it read from DuckLake). The cycle fails within seconds with a one-line error naming the
lost worker, registers and promotes nothing; the worker left, whose LightGBM task would wait for the
lost peer forever, was restarted through its nanny; the next cycle trains there and promotes. Runs in
a loopback-only network namespace (LightGBM's collective listens on 0.0.0.0)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ct_assets_tests.helpers.cluster import ClusterProject, cluster_extra_missing

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.skipif(bool(cluster_extra_missing()), reason=cluster_extra_missing() or "-"),
]
pytest.importorskip("distributed", reason="Dask is not installed (the cluster venv has it)")

TRAIN_TASK = "_train_part"  # lightgbm.dask's task, one per worker
RUN_TIMEOUT = 400


def _training_workers(scheduler: str, cycle: subprocess.Popen[str], timeout: float) -> dict[str, int]:
    """Worker address -> pid of each worker running a LightGBM training task, once both run one."""
    from distributed import Client

    deadline = time.monotonic() + timeout
    with Client(scheduler, timeout=10, set_as_default=False) as client:
        pids = client.run(os.getpid)
        while time.monotonic() < deadline:
            busy = {
                a: int(pids[a])
                for a, keys in client.processing().items()
                if any(TRAIN_TASK in str(k) for k in keys)
            }
            if len(busy) == 2:
                return busy
            if cycle.poll() is not None:
                raise AssertionError(f"the cycle ended before training started: {cycle.communicate()}")
            time.sleep(0.05)
        tasks = {a: [str(k) for k in keys] for a, keys in client.processing().items()}
    raise AssertionError(f"LightGBM did not start training on both workers within {timeout:.0f} s: {tasks}")


def test_a_worker_killed_while_lightgbm_trains_fails_the_cycle_cleanly(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from ct_assets_tests.helpers.dask import dask_cluster, inside_loopback_netns

    if not inside_loopback_netns(request):
        return
    services = request.getfixturevalue("cluster_services")
    cluster = services.fresh()
    # Enough boosting rounds that training is still running when the worker is killed.
    training = {"engine": "dask", "num_iterations": 4000, "learning_rate": 0.01}
    host = ClusterProject.make(tmp_path / "host", cluster, services, training=training)
    assert host.cli("init").returncode == 0
    out = host.cli("simulate", "--batches", "3", "--rows", "6000", "--seed", "9")
    assert out.returncode == 0, out.stderr
    host.land(sorted((host.folder / "data" / "landing").glob("*.parquet")))

    with dask_cluster(tmp_path / "dask", workers=2, env=host.env, nanny=True) as dask:
        env = {**host.env, "CT_DASK_SCHEDULER": dask.address}
        started = time.monotonic()
        cycle = subprocess.Popen(
            [str(Path(sys.executable).parent / "ct-assets"), "cycle", "--json"],
            cwd=host.folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        busy = _training_workers(dask.address, cycle, timeout=RUN_TIMEOUT)
        lost, survivor = sorted(busy)
        os.killpg(os.getpgid(busy[lost]), signal.SIGKILL)  # the host: its nanny and its worker
        killed_at = time.monotonic() - started
        stdout, stderr = cycle.communicate(timeout=RUN_TIMEOUT)
        failed_after = time.monotonic() - started - killed_at
        assert cycle.returncode != 0, stdout
        assert "Traceback" not in stderr, stderr[-3000:]
        models = host.query("SELECT count(*) FROM models")[0][0]
        ledger = host.query("SELECT action FROM ledger")
        assert models == 0 and all(a != "promoted" for (a,) in ledger), (models, ledger)
        last_line = stderr.strip().splitlines()[-1]
        assert last_line.startswith("ct-assets: error: the CT run failed: challenger_model: Dask worker "), (
            stderr
        )
        assert f"{lost} left the cluster" in last_line and f"were restarted ({survivor})" in last_line
        assert failed_after < 60, failed_after

        again = host.cli("cycle", "--json", timeout=RUN_TIMEOUT, CT_DASK_SCHEDULER=dask.address)
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads(again.stdout)
    assert result["verdict"] == "promoted", result
    card = json.loads(
        (host.folder / "data" / "models" / result["champion_version"] / "card.json").read_text()
    )
    assert (
        card["dask"]["workers"] == card["dask"]["machines"] == 1
        and card["dask"]["rows_read_by"] == "each worker"
    )
    print(
        f"worker host killed {killed_at:.1f} s into the cycle; the cycle failed {failed_after:.1f} s later: {last_line}"
    )
