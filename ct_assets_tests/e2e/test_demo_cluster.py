"""`ct-assets demo --cluster` end to end: PostgreSQL, moto's S3 server, a Dask scheduler and two workers,
`dagster dev` and the feeder, each its own process on 127.0.0.1. Within three minutes the UI's GraphQL
shows sensor-triggered runs that succeeded, their steps ran in the workers' processes (not the run's),
a champion is promoted; after SIGTERM no process of the demo is left."""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ct_assets_tests.helpers.cli import console_script
from ct_assets_tests.helpers.cluster import cluster_extra_missing, pg_bin
from ct_assets_tests.helpers.processes import HOST, descendants, free_port, tail, wait_for_port
from ct_assets_tests.helpers.servers import graphql

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.skipif(bool(cluster_extra_missing()), reason=cluster_extra_missing() or "-"),
    pytest.mark.skipif(pg_bin() is None, reason="PostgreSQL server binaries not installed"),
]
WITHIN = 180  # seconds from the start of the demo to a promoted champion

RUNS = (
    """{ runsOrError(limit: 50) { ... on Runs { results { runId jobName status tags { key value } } } } }"""
)
CHAMPION = """{ assetOrError(assetKey: {path: ["champion_model"]}) {
  ... on Asset { assetMaterializations(limit: 1) { runId } } } }"""


def test_the_cluster_demo_runs_steps_on_the_workers_promotes_and_stops_everything() -> None:
    root = Path(tempfile.mkdtemp(prefix="ct_demo_cluster_"))
    root.chmod(0o755)  # PostgreSQL runs as `postgres` when the tests run as root
    folder, port, log = root / "demo", free_port(), root / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_ASSETS", "DAGSTER", "PG", "AWS_"))}
    t0 = time.monotonic()
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [
                console_script(),
                "demo",
                "--cluster",
                "--dir",
                str(folder),
                "--port",
                str(port),
                "--interval",
                "5",
            ],
            cwd=root,
            env={**env, "TMPDIR": str(root)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    seen: set[int] = set()
    try:
        wait_for_port(demo, port, log, 150, http_path="/server_info")
        runs, champion = _wait_for_champion(demo, port, log, t0, seen)
        promoted_after = time.monotonic() - t0
        text = log.read_text()
        assert f"http://{HOST}:{port}" in text and "Dask scheduler: tcp://127.0.0.1:" in text
        _assert_steps_ran_on_workers(text, folder, runs)
        assert champion in {r["runId"] for r in runs}
        status = _status(text, folder, env)  # v0001, or a later one if a second CT run promoted already
        assert re.search(r"^champion: v\d{4} \(promoted", status, re.M), status
        print(f"first promoted champion {promoted_after:.0f} s after the demo started")
    finally:
        seen |= _demo_processes(demo.pid, root)
        with contextlib.suppress(ProcessLookupError):
            demo.send_signal(signal.SIGTERM)
        try:
            code = demo.wait(timeout=90)
        except subprocess.TimeoutExpired:
            code = None
        time.sleep(1)
        left = {p: _cmdline(p) for p in seen | _demo_processes(demo.pid, root) if _alive(p)}
        for pid in left:  # leave nothing behind, even when the demo did
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if code is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=20)
        shutil.rmtree(root, ignore_errors=True)
    assert code is not None, "the demo did not exit within 90 s of SIGTERM"
    assert not left, f"processes of the demo left after SIGTERM: {left}"


def _wait_for_champion(
    demo: subprocess.Popen[bytes], port: int, log: Path, t0: float, seen: set[int]
) -> tuple[list[dict], str]:
    """The successful sensor-triggered runs, and the run that materialized champion_model, once both an
    ingest run (landing_sensor) and a CT run (retrain_sensor) succeeded and a champion was promoted."""
    while True:
        if demo.poll() is not None:
            pytest.fail(f"the demo exited with {demo.returncode}:\n{tail(log)}")
        seen |= _demo_processes(demo.pid, log.parent)
        runs = [
            r
            for r in graphql(port, RUNS)["runsOrError"]["results"]
            if r["status"] == "SUCCESS" and _tag(r, "dagster/sensor_name")
        ]
        sensors = {_tag(r, "dagster/sensor_name") for r in runs}
        materialized = graphql(port, CHAMPION)["assetOrError"].get("assetMaterializations") or []
        if {"landing_sensor", "retrain_sensor"} <= sensors and materialized:
            return runs, materialized[0]["runId"]
        if time.monotonic() - t0 > WITHIN:
            pytest.fail(f"no promoted champion within {WITHIN} s; runs: {runs}\n{tail(log)}")
        time.sleep(2)


def _services_env(text: str) -> dict[str, str]:
    """The environment pointing a process at the demo's PostgreSQL and S3 server, from the addresses it
    printed and loopback_cluster's throw-away credentials."""
    from ct_assets.tools.loopback_cluster import PG_PASSWORD, PG_USER, S3_KEY, S3_REGION, S3_SECRET

    pg_port = re.search(r"PostgreSQL: 127\.0\.0\.1:(\d+)", text)
    endpoint = re.search(r"object store \(moto S3\): (http://127\.0\.0\.1:\d+)", text)
    assert pg_port and endpoint, text
    return {
        "PGHOST": HOST,
        "PGPORT": pg_port.group(1),
        "PGUSER": PG_USER,
        "PGPASSWORD": PG_PASSWORD,
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_REGION": S3_REGION,
        "AWS_ENDPOINT_URL": endpoint.group(1),
    }


def _assert_steps_ran_on_workers(text: str, folder: Path, runs: list[dict]) -> None:
    """Every step of the runs ran in a Dask worker's process (its working folder one of the workers'),
    not in the run's own process; both workers ran steps. Read from the PostgreSQL instance's event log."""
    import dagster as dg

    from ct_assets_tests.helpers.dask import step_pids

    folders = set()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in _services_env(text).items():
            mp.setenv(key, value)
        with dg.DagsterInstance.from_config(str(folder / "dagster_home")) as instance:
            for run in runs:
                steps = step_pids(instance, run["runId"], dg.DagsterEventType.STEP_START)
                kind = dg.DagsterEventType.RUN_START
                (start,) = instance.get_records_for_run(run["runId"], of_type=kind).records
                run_pid = start.event_log_entry.dagster_event.pid  # type: ignore[union-attr]
                assert steps and run_pid not in steps.values(), (run, steps, run_pid)
                for pid in set(steps.values()):
                    cwd = Path(os.readlink(f"/proc/{pid}/cwd"))  # the worker processes live on
                    assert cwd.parent == folder / "services" / "workers", (run, pid, cwd)
                    folders.add(cwd.name)
    assert folders == {"w1", "w2"}, folders


def _status(text: str, folder: Path, env: dict[str, str]) -> str:
    """`ct-assets status` of the demo, pointed at its services by the addresses it printed."""
    env = {
        **env,
        **_services_env(text),
        "CT_ASSETS_CONFIG": str(folder / "config.toml"),
        "DAGSTER_HOME": str(folder / "dagster_home"),
    }
    out = subprocess.run(
        [console_script(), "status"], cwd=folder, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _tag(run: dict, key: str) -> str | None:
    return next((t["value"] for t in run["tags"] if t["key"] == key), None)


def _demo_processes(pid: int, root: Path) -> set[int]:
    """The demo's process tree, and every process whose command line names the demo's folder (PostgreSQL,
    which pg_ctl detaches)."""
    found = set(descendants(pid))
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(root).encode() in (entry / "cmdline").read_bytes():
                    found.add(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    return "?"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
