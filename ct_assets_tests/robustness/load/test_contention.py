"""Contention and load, on real parts only: the real Dagster daemon and sensors, the real web server on
127.0.0.1, a real DuckDB file, and a "notebook" process reading the warehouse beside the pipeline.

- Contention: the daemon ticks the sensors at a 1 s interval while a feeder lands deltas, so ingest and CT
  runs write while a reader process queries the warehouse read-only in a loop (the snippet of
  docs/reading_the_warehouse.md) and `ct-assets export` copies it to Parquet. Then, from the Dagster
  instance: no failed run except gate blocks, no failed tick, one CT run per run key and newest
  batch; from the warehouse: every landed file handled exactly once.
- Load: a burst of small files, and (soak) a burst of 1,000 files and one 5,000,000-row file,
  ingested by `ct-assets cycle` in a subprocess whose peak RSS is measured, while the web server's
  GraphQL latency is sampled.

The short variants always run; `pytest -m soak -s ct_assets_tests/test_load_and_contention.py` runs
the long ones. Durations and sizes come from the CT_ASSETS_* variables below. Figures are printed
(`-s` shows them) with the machine's load, since the machine is shared.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
import pytest

from ct_assets.commands.export import export_warehouse
from ct_assets.config import Settings
from ct_assets.core.ingest import landing
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.defs.constants import BATCH_TAG
from ct_assets.errors import WarehouseBusy
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets.tools.simulator import SimulationOptions, generate_rows, simulate
from ct_assets_tests.helpers.config import CHECKOUT, small
from ct_assets_tests.helpers.processes import stop_family, tail
from ct_assets_tests.helpers.servers import (
    BIN,
    daemon,
    graphql,
    server_env,
    shipped_instance_config,
    webserver,
    write_instance_config,
)
from ct_assets_tests.helpers.warehouse import holding

DOC = CHECKOUT / "docs" / "reading_the_warehouse.md"


def _knob(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


CONTENTION_SECONDS = _knob("CT_ASSETS_CONTENTION_SECONDS", 60)
SOAK_CONTENTION_SECONDS = _knob("CT_ASSETS_SOAK_SECONDS", 300)
BURST_FILES = int(_knob("CT_ASSETS_LOAD_FILES", 50))
SOAK_BURST_FILES = int(_knob("CT_ASSETS_SOAK_FILES", 1000))
SOAK_BIG_ROWS = int(_knob("CT_ASSETS_SOAK_ROWS", 5_000_000))
SMALL_FILE_ROWS = 50
FEED_EVERY_SECONDS = 4.0  # about what ingest keeps up with on the shared 2-core machine
FEED_ROWS = 2000
BAD_FILE_EVERY = 7  # every 7th delta also lands a file with a misspelled column (to be quarantined)
EXPORT_EVERY_SECONDS = 10.0
DAEMON_LOOP_SECONDS = 1.0
RSS_LIMIT_KIB = 3 * 1024 * 1024  # above 3 GiB the big file's ingest is reported as unbounded


def machine_load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def report(title: str, figures: dict[str, Any]) -> None:
    """Print figures so that `pytest -s` shows them."""
    print(f"\n=== {title} ({machine_load()})", flush=True)
    for key, value in figures.items():
        print(f"  {key}: {value}", flush=True)


# ------------------------------------------------------------------------------------------ processes


def pipeline_env(project: Path, settings: Settings, home: Path) -> dict[str, str]:
    return server_env(project, home, settings.source)


def write_pipeline_instance(home: Path) -> None:
    """The instance config ct_assets ships (run queue, one CT run at a time, run monitoring), with the
    queue dequeued every second."""
    shipped = shipped_instance_config()
    shipped.setdefault("run_queue", {})["dequeue_interval_seconds"] = 1
    write_instance_config(home, shipped)


ASSET_NODES = "{ assetNodes { assetKey { path } groupName } }"


class LatencyProbe:
    """Asks the web server for the asset nodes, again and again, in a thread; records each response time."""

    def __init__(self, port: int, pause: float = 0.5) -> None:
        self.port, self.pause = port, pause
        self.seconds: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            try:
                data = graphql(self.port, ASSET_NODES)
                assert len(data["assetNodes"]) >= 6, data
                self.seconds.append(time.perf_counter() - t)
            except Exception as e:  # a timeout or a refused connection is a finding, not a crash
                self.errors.append(f"{type(e).__name__}: {e}"[:200])
            self._stop.wait(self.pause)

    def __enter__(self) -> LatencyProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=90)

    def figures(self) -> str:
        if not self.seconds:
            return f"no answer ({len(self.errors)} errors: {self.errors[:2]})"
        ms = sorted(1000 * s for s in self.seconds)
        p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
        return (
            f"{len(ms)} queries, median {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms, "
            f"max {ms[-1]:.0f} ms, errors {len(self.errors)}"
        )


# The peak RSS of a command and of everything below it, read by a parent that runs nothing else.
RSS = """
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
print("PEAK_RSS_KIB " + str(peak), file=sys.stderr, flush=True)
sys.exit(proc.returncode)
"""


def run_measured(args: list[str], project: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run a command in a subprocess; its stdout, exit code, wall time and peak RSS (KiB)."""
    t = time.perf_counter()
    err_path = project / f"measured_{int(t * 1000)}.stderr"
    with err_path.open("wb") as err:
        proc = subprocess.run(
            [sys.executable, "-c", RSS, *args],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=timeout,
        )
    seconds = time.perf_counter() - t
    stderr = err_path.read_text(errors="replace")
    match = re.search(r"PEAK_RSS_KIB (\d+)", stderr)
    return {
        "returncode": proc.returncode,
        "stdout": proc.stdout.decode(errors="replace"),
        "stderr": stderr[-3000:],
        "seconds": seconds,
        "peak_rss_kib": int(match.group(1)) if match else None,
    }


# --------------------------------------------------------------------------------- the notebook reader


def notebook_snippet() -> str:
    """The documented way for a notebook to read the warehouse (docs/reading_the_warehouse.md)."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    found = [b for b in blocks if "def read_warehouse(" in b]
    assert found, f"{DOC} shows no read_warehouse snippet"
    return found[0]


NOTEBOOK_LOOP = """
import json, os, sys, time
path, stop_file, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
queries = [
    "SELECT count(*) AS n, count(DISTINCT _batch_id) AS batches FROM raw_deltas",
    "SELECT region, avg(label) AS churn, count(*) AS n FROM raw_deltas GROUP BY ALL ORDER BY region",
    "SELECT action, version, recorded_at FROM ledger ORDER BY entry_id DESC LIMIT 5",
    "SELECT status, count(*) AS n FROM ingest_log GROUP BY ALL",
]
reads, errors, slowest, waited = 0, [], 0.0, 0
while not os.path.exists(stop_file):
    for sql in queries:
        t = time.monotonic()
        try:
            frame = read_warehouse(sql, path)
            assert frame.height >= 0
            reads += 1
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}"[:300])
        took = time.monotonic() - t
        slowest = max(slowest, took)
        waited += took > 0.5
    time.sleep(pause)
print(json.dumps({"reads": reads, "errors": errors, "slowest_seconds": round(slowest, 3), "waited": waited}))
"""


@contextlib.contextmanager
def notebook(settings: Settings, project: Path, pause: float = 0.2) -> Iterator[dict[str, Any]]:
    """A separate process querying the warehouse read-only in a loop, as the docs show; yields the
    figures it reports once stopped."""
    stop_file = project / "notebook.stop"
    out: dict[str, Any] = {}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            notebook_snippet() + NOTEBOOK_LOOP,
            str(settings.paths.warehouse),
            str(stop_file),
            str(pause),
        ],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        yield out
        stop_file.write_text("stop")
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr.decode()[-2000:]
        out.update(json.loads(stdout.decode().strip().splitlines()[-1]))
    finally:
        if proc.poll() is None:
            stop_family(proc)


# ---------------------------------------------------------------------------------- the Dagster record

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _errors(error: Any) -> list[Any]:
    chain = []
    while error is not None:
        chain.append(error)
        error = error.cause
    return chain


def failure_kind(inst: dg.DagsterInstance, run_id: str) -> tuple[str, str]:
    """("block", how) for a run stopped by the gate (a blocking check failed, or the registry refused
    to promote), else ("failure", the first error line)."""
    failures = inst.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    errors = [
        e
        for record in failures
        if record.dagster_event is not None and record.dagster_event.step_failure_data is not None
        for e in _errors(record.dagster_event.step_failure_data.error)
    ]
    if any(e.cls_name == "DagsterAssetCheckFailedError" for e in errors):
        return "block", "blocking check failed"
    if any(e.cls_name == "RegistryError" and "check" in e.message for e in errors):
        return "block", "registry refused"
    if errors:
        return "failure", f"{errors[-1].cls_name}: {errors[-1].message.strip().splitlines()[0][:300]}"
    run_failures = inst.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return "failure", (run_failures[-1].message if run_failures else "failed without a step failure")[:300]


# Tick statuses by their values: `import dagster` exports no TickStatus (it lives in the private
# dagster._core.scheduler.instigation); these values are also the GraphQL schema's InstigationTickStatus.
SKIPPED, FAILURE = "SKIPPED", "FAILURE"


def tick_figures(inst: dg.DagsterInstance) -> dict[str, Counter[str]]:
    """Ticks of every sensor and schedule, counted by status (and the skip reasons, numbers removed)."""
    out: dict[str, Counter[str]] = {}
    for state in inst.all_instigator_state():
        counts: Counter[str] = Counter()
        for t in inst.get_ticks(state.instigator_origin_id, state.selector_id):
            counts[t.status.value] += 1
            if t.status.value == SKIPPED and t.skip_reason:
                counts["skip: " + re.sub(r"\d+", "N", t.skip_reason)[:70]] += 1
            if t.status.value == FAILURE:
                counts["error: " + (t.error.message if t.error else "")[:200]] += 1
        out[state.instigator_name] = counts
    return out


def in_flight(inst: dg.DagsterInstance) -> int:
    return len(inst.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT)))


# -------------------------------------------------------------------------------------------- feeder


def land_bad_file(settings: Settings, n: int, seq: int) -> str:
    """A CSV whose `monthly_spend` column is misspelled (as producers sometimes do): to be quarantined."""
    rng = np.random.default_rng([99, seq])
    data = generate_rows(rng, n, SimulationOptions(batches=1, rows=n))
    data["monthly_spnd"] = data.pop("monthly_spend")
    frame = pl.DataFrame(
        {
            "event_time": pl.datetime_range(
                pl.datetime(2026, 1, 1), pl.datetime(2026, 1, 1, 1), "1s", eager=True
            ).head(n),
            "row_id": np.arange(10**12 + seq * n, 10**12 + (seq + 1) * n, dtype=np.int64),
            **data,
        }
    )
    name = f"bad_{seq:04d}.csv"
    part = settings.paths.landing / f".{name}.part"
    frame.write_csv(part)
    os.replace(part, settings.paths.landing / name)
    return name


def warehouse_truth(settings: Settings) -> dict[str, Any]:
    with connect_reader(settings, wait_seconds=60) as con:
        raw = con.execute("SELECT count(*), count(DISTINCT row_id) FROM raw_deltas").fetchall()[0]
        log = con.execute("SELECT file_name, status FROM ingest_log ORDER BY entry_id").fetchall()
        validations = con.execute("SELECT run_id, passed FROM validations").fetchall()
        ledger = con.execute("SELECT action, count(*) FROM ledger GROUP BY ALL").fetchall()
        alert_kinds = con.execute("SELECT kind, count(*) FROM alerts GROUP BY ALL").fetchall()
    return {
        "rows": int(raw[0]),
        "distinct_ids": int(raw[1]),
        "log": log,
        "validations": {r: bool(p) for r, p in validations},
        "ledger": dict(ledger),
        "alerts": dict(alert_kinds),
    }


# ---------------------------------------------------------------------------------------- contention


def contention(make_settings: Callable[..., Settings], project: Path, seconds: float, title: str) -> None:
    # A small, fast loop, retraining every couple of deltas; a strict point-estimate gate, so that
    # promotions and blocks both happen.
    settings = make_settings(
        **small(
            retrain={"min_new_rows": 2 * FEED_ROWS},
            gate={"rule": "point", "tolerance": 0.002},
        )
    )
    init_warehouse(settings)
    home = project / "dagster_home"
    write_pipeline_instance(home)
    env = pipeline_env(project, settings, home)
    landed: dict[str, int] = {}
    bad: list[str] = []
    exports: list[dict[str, Any]] = []
    started = time.monotonic()
    with (
        daemon(
            project, {**env, "CT_ASSETS_SENSOR_INTERVAL": "1"}, sensor_loop_seconds=DAEMON_LOOP_SECONDS
        ) as proc,
        dg.DagsterInstance.from_config(str(home)) as inst,
    ):
        # The daemon is live once the landing sensor has ticked.
        deadline = time.monotonic() + 180
        while not tick_figures(inst).get("landing_sensor"):
            assert proc.poll() is None, f"daemon exited:\n{tail(project / 'daemon.log')}"
            assert time.monotonic() < deadline, f"no sensor tick after 180 s:\n{tail(project / 'daemon.log')}"
            time.sleep(1)
        startup = time.monotonic() - started
        with notebook(settings, project) as reader:
            t0 = time.monotonic()
            next_export = t0 + EXPORT_EVERY_SECONDS
            seq = 0
            while time.monotonic() - t0 < seconds:
                assert proc.poll() is None, f"daemon exited:\n{tail(project / 'daemon.log')}"
                for path in simulate(settings, SimulationOptions(batches=1, rows=FEED_ROWS, seed=seq)):
                    landed[path.name] = FEED_ROWS
                if seq % BAD_FILE_EVERY == BAD_FILE_EVERY - 1:
                    bad.append(land_bad_file(settings, 200, seq))
                seq += 1
                if time.monotonic() >= next_export:
                    # A BI tool's copy, taken while the pipeline writes; it reads the Parquet files only.
                    exports.append(export_warehouse(settings, project / "export"))
                    next_export += EXPORT_EVERY_SECONDS
                time.sleep(FEED_EVERY_SECONDS)
            fed = time.monotonic() - t0
            # Drain: every landed file handled, no run in flight, and it stays so for a few ticks.
            deadline = time.monotonic() + 420
            quiet_since: float | None = None
            while True:
                busy = bool(landing.ready_files(settings.paths.landing)) or in_flight(inst) > 0
                now = time.monotonic()
                quiet_since = None if busy else (quiet_since or now)
                if quiet_since is not None and now - quiet_since >= 8:
                    break
                assert proc.poll() is None, f"daemon exited:\n{tail(project / 'daemon.log')}"
                assert now < deadline, (
                    f"not drained after 420 s: {len(landing.ready_files(settings.paths.landing))} files "
                    f"waiting, {in_flight(inst)} runs in flight\n{tail(project / 'daemon.log')}"
                )
                time.sleep(1)
            drained = time.monotonic() - t0 - fed
        final_export = export_warehouse(settings, project / "export")
        runs = inst.get_runs()
        kinds = {
            r.run_id: failure_kind(inst, r.run_id) for r in runs if r.status == dg.DagsterRunStatus.FAILURE
        }
        ticks = tick_figures(inst)
    truth = warehouse_truth(settings)

    by_job = Counter(f"{r.job_name}:{r.status.value}" for r in runs)
    blocks = sorted(run_id for run_id, (kind, _) in kinds.items() if kind == "block")
    failures = {run_id: text for run_id, (kind, text) in kinds.items() if kind == "failure"}
    ct_runs = [r for r in runs if r.job_name == "ct_job"]
    run_keys = Counter(r.tags.get("dagster/run_key") for r in ct_runs)
    batches = Counter(r.tags.get(BATCH_TAG) for r in ct_runs)
    tick_summary = {
        name: {k: v for k, v in counts.items() if not k.startswith(("skip:", "error:"))}
        for name, counts in ticks.items()
    }
    skip_reasons = {
        name: dict(Counter({k: v for k, v in counts.items() if k.startswith("skip:")}).most_common(4))
        for name, counts in ticks.items()
    }
    report(
        title,
        {
            "daemon start (first tick)": f"{startup:.0f} s",
            "feeding": f"{fed:.0f} s, drain {drained:.0f} s; {len(landed)} deltas of {FEED_ROWS} rows, "
            f"{len(bad)} bad files",
            "ticks by sensor": tick_summary,
            "top skip reasons": skip_reasons,
            "runs by job:status": dict(by_job),
            "blocks (gate)": len(blocks),
            "failures (other)": failures or 0,
            "CT runs": f"{len(ct_runs)}; ledger {truth['ledger']}",
            "notebook": reader,
            "exports during the run": f"{len(exports)}, warehouse held read-only at most "
            f"{max((e['warehouse_held_seconds'] for e in exports), default=0):.2f} s",
            "warehouse": f"{truth['rows']} rows in raw_deltas vs {sum(landed.values())} landed; alerts {truth['alerts']}",
        },
    )

    # No failed run except gate blocks; every block is a recorded failed validation.
    assert not failures, f"runs failed for other reasons than the gate: {failures}"
    assert not any(r.status == dg.DagsterRunStatus.CANCELED for r in runs), by_job
    assert all(truth["validations"].get(run_id) is False for run_id in blocks), (blocks, truth["validations"])
    assert "failure" not in truth["alerts"], truth["alerts"]
    # No failed tick, and the sensors really ran at the tightened interval.
    failed_ticks = {n: c for n, c in ticks.items() if c.get(FAILURE)}
    assert not failed_ticks, failed_ticks
    for name in ("landing_sensor", "retrain_sensor"):
        assert sum(tick_summary[name].values()) >= (fed + drained) / 8, (name, tick_summary[name])
    # The loop ran: ingest runs, and CT runs launched by the retrain sensor; one per run key and batch.
    assert by_job.get("ingest_job:SUCCESS", 0) >= 2, by_job
    assert ct_runs, by_job
    assert all(n == 1 for n in run_keys.values()), run_keys
    assert all(n == 1 for n in batches.values()), batches
    assert truth["validations"], "no CT run reached the gate"
    # Every landed file handled exactly once: good ones ingested, bad ones quarantined.
    statuses: dict[str, list[str]] = {}
    for name, status in truth["log"]:
        statuses.setdefault(name, []).append(status)
    assert statuses == {**{n: ["ingested"] for n in landed}, **{n: ["quarantined"] for n in bad}}
    assert truth["rows"] == truth["distinct_ids"] == sum(landed.values())
    assert sorted(p.name for p in settings.paths.archive.iterdir()) == sorted(landed)
    assert not landing.ready_files(settings.paths.landing)
    # The reader never broke a run (above) and was never refused for long: it read all along.
    assert not reader["errors"], reader["errors"][:5]
    assert reader["reads"] >= seconds, reader
    # The final export shows exactly the warehouse, read from Parquet alone.
    assert final_export["tables"]["raw_deltas"] == truth["rows"]
    assert (
        pl.scan_parquet(project / "export" / "raw_deltas.parquet").select(pl.len()).collect().item()
        == (truth["rows"])
    )


@pytest.mark.slow
def test_contention_daemon_sensors_feeder_and_a_reader(
    make_settings: Callable[..., Settings], project: Path
) -> None:
    contention(make_settings, project, CONTENTION_SECONDS, f"contention, {CONTENTION_SECONDS:.0f} s")


@pytest.mark.slow
@pytest.mark.soak
def test_contention_soak(make_settings: Callable[..., Settings], project: Path) -> None:
    contention(
        make_settings, project, SOAK_CONTENTION_SECONDS, f"contention soak, {SOAK_CONTENTION_SECONDS:.0f} s"
    )


# ---------------------------------------------------------------------------------------------- load


def ingest_by_cycle(project: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """`ct-assets cycle --json` in a subprocess (through Dagster, on the instance at DAGSTER_HOME)."""
    out = run_measured([str(BIN / "ct-assets"), "cycle", "--json"], project, env, timeout)
    assert out["returncode"] == 0, out["stderr"]
    out["cycle"] = json.loads(out["stdout"].strip().splitlines()[-1])
    return out


def assert_all_ingested_once(settings: Settings, landed: dict[str, int]) -> dict[str, Any]:
    truth = warehouse_truth(settings)
    statuses: dict[str, list[str]] = {}
    for name, status in truth["log"]:
        statuses.setdefault(name, []).append(status)
    assert statuses == {n: ["ingested"] for n in landed}
    assert truth["rows"] == truth["distinct_ids"] == sum(landed.values())
    assert not landing.ready_files(settings.paths.landing)
    return truth


def load_settings_for(make_settings: Callable[..., Settings]) -> Settings:
    # Ingest only: no retraining however many rows land.
    settings = make_settings(**small(retrain={"min_new_rows": 10**12}))
    init_warehouse(settings)
    return settings


@pytest.mark.slow
def test_a_burst_of_small_files_is_ingested_exactly_once(
    make_settings: Callable[..., Settings], project: Path
) -> None:
    settings = load_settings_for(make_settings)
    env = pipeline_env(project, settings, project / "dagster_home")
    paths = simulate(settings, SimulationOptions(batches=BURST_FILES, rows=SMALL_FILE_ROWS, seed=11))
    landed = {p.name: SMALL_FILE_ROWS for p in paths}
    out = ingest_by_cycle(project, env, timeout=1800)
    truth = assert_all_ingested_once(settings, landed)
    report(
        f"burst of {BURST_FILES} small files",
        {
            "files": f"{len(landed)} landed, {out['cycle']['ingested_files']} ingested",
            "rows": f"{sum(landed.values())} landed, {truth['rows']} in raw_deltas",
            "ingest (ct-assets cycle)": f"{out['seconds']:.1f} s, {out['seconds'] / BURST_FILES:.2f} s per file",
            "peak RSS": f"{out['peak_rss_kib'] / 1024:.0f} MiB",
        },
    )
    assert out["cycle"]["ingested_files"] == BURST_FILES
    assert out["cycle"]["quarantined_files"] == out["cycle"]["duplicate_files"] == 0


@pytest.mark.slow
@pytest.mark.soak
def test_load_soak_1000_files_and_5m_rows_with_the_web_server_answering(
    make_settings: Callable[..., Settings], project: Path
) -> None:
    settings = load_settings_for(make_settings)
    home = project / "dagster_home"
    write_pipeline_instance(home)
    env = pipeline_env(project, settings, home)
    figures: dict[str, Any] = {}
    with webserver(project, env) as port:
        with LatencyProbe(port) as idle:
            time.sleep(15)
        figures["GraphQL, idle"] = idle.figures()

        # A burst of small files.
        t = time.perf_counter()
        paths = simulate(settings, SimulationOptions(batches=SOAK_BURST_FILES, rows=SMALL_FILE_ROWS, seed=12))
        landed = {p.name: SMALL_FILE_ROWS for p in paths}
        figures["burst landed"] = f"{len(landed)} files in {time.perf_counter() - t:.0f} s"
        with LatencyProbe(port) as during_burst:
            burst = ingest_by_cycle(project, env, timeout=7200)
        assert_all_ingested_once(settings, landed)
        figures["burst ingest"] = (
            f"{burst['cycle']['ingested_files']} files in {burst['seconds']:.0f} s "
            f"({burst['seconds'] / len(landed):.2f} s per file), peak RSS {burst['peak_rss_kib'] / 1024:.0f} MiB"
        )
        figures["GraphQL during the burst"] = during_burst.figures()
        figures["load after the burst"] = machine_load()

        # One big file.
        t = time.perf_counter()
        (big,) = simulate(settings, SimulationOptions(batches=1, rows=SOAK_BIG_ROWS, seed=13))
        landed[big.name] = SOAK_BIG_ROWS
        figures["big file landed"] = (
            f"{SOAK_BIG_ROWS} rows, {big.stat().st_size / 2**20:.0f} MiB Parquet, in {time.perf_counter() - t:.0f} s"
        )
        with LatencyProbe(port) as during_big:
            big_out = ingest_by_cycle(project, env, timeout=7200)
        truth = assert_all_ingested_once(settings, landed)
        figures["big file ingest"] = (
            f"{big_out['seconds']:.0f} s, peak RSS {big_out['peak_rss_kib'] / 2**20:.2f} GiB"
            + (" (over 3 GiB: unbounded)" if big_out["peak_rss_kib"] > RSS_LIMIT_KIB else "")
        )
        figures["GraphQL during the big ingest"] = during_big.figures()
        figures["rows"] = f"{sum(landed.values())} landed, {truth['rows']} in raw_deltas"
        exported = export_warehouse(settings)
        figures["export afterwards"] = (
            f"{exported['seconds']:.1f} s, warehouse held read-only {exported['warehouse_held_seconds']:.1f} s"
        )
    report("load soak", figures)
    assert big_out["cycle"]["ingested_files"] == 1
    assert during_burst.seconds and during_big.seconds, (during_burst.errors[:3], during_big.errors[:3])
    assert exported["tables"]["raw_deltas"] == truth["rows"]


# ------------------------------------------------------------------------ readers beside the pipeline


def test_export_writes_parquet_copies_of_every_table_and_rewrites_only_after_a_write(
    settings: Settings, project: Path
) -> None:
    from ct_assets.cli.main import main

    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=2, rows=300, seed=21))
    ingest_landed_files(settings)

    assert main(["export", "--json"]) == 0
    folder = settings.paths.warehouse.parent / "export"
    manifest = json.loads((folder / "manifest.json").read_text())
    with connect_reader(settings) as con:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            ).fetchall()
        ]
        expected = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in tables}
        rows = con.sql("SELECT * FROM raw_deltas ORDER BY row_id").pl()
    assert manifest["tables"] == expected and expected["raw_deltas"] == 600
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*(f"{t}.parquet" for t in tables), "manifest.json"]
    )
    copy = pl.read_parquet(folder / "raw_deltas.parquet").sort("row_id")
    assert copy.equals(rows)

    # Nothing changed: nothing rewritten. A write: a new copy.
    before = (folder / "raw_deltas.parquet").stat().st_mtime_ns
    again = export_warehouse(settings)
    assert again["written"] is False and (folder / "raw_deltas.parquet").stat().st_mtime_ns == before
    simulate(settings, SimulationOptions(batches=1, rows=300, seed=21))
    ingest_landed_files(settings)
    after = export_warehouse(settings)
    assert after["written"] is True and after["tables"]["raw_deltas"] == 900
    assert pl.read_parquet(folder / "raw_deltas.parquet").height == 900
    elsewhere = export_warehouse(settings, project / "bi")
    assert elsewhere["written"] is True and (project / "bi" / "ledger.parquet").exists()


def test_export_without_a_warehouse_is_a_one_line_error_and_creates_nothing(
    settings: Settings, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ct_assets.cli.main import main

    assert main(["export"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no warehouse at" in err and "ct-assets init" in err
    assert not (project / "data").exists()


def test_a_reader_holding_the_warehouse_stalls_writers_and_export_does_not_hold_it(
    make_settings: Callable[..., Settings],
) -> None:
    # Writers wait for the DuckDB file at least 5 s (max(lock_timeout_seconds, 5)).
    settings = make_settings(ingest={"lock_timeout_seconds": 1})
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=1, rows=300, seed=31))
    ingest_landed_files(settings)
    simulate(settings, SimulationOptions(batches=1, rows=300, seed=31))

    # A notebook keeping a read-only connection open: the ingest gives up, and the file stays landed.
    with holding(settings, "ro") as holder:
        t = time.monotonic()
        with pytest.raises(WarehouseBusy, match="locked by another process") as busy:
            ingest_landed_files(settings)
        assert time.monotonic() - t >= 4.5
        assert str(holder.pid) in str(busy.value)
        assert len(landing.ready_files(settings.paths.landing)) == 1
        # Read-only beside read-only is fine: an export runs while the notebook holds the file.
        assert export_warehouse(settings)["tables"]["raw_deltas"] == 300

    # Held for less than the writer's patience: the ingest waits and goes through.
    with holding(settings, "ro"):
        result: dict[str, Any] = {}
        writer = threading.Thread(target=lambda: result.update(report=ingest_landed_files(settings)))
        writer.start()
        time.sleep(1.5)
        assert writer.is_alive()  # waiting for the file
    writer.join(timeout=60)
    assert [f.status for f in result["report"].files] == ["ingested"]

    # An export while a writer holds the file waits for it rather than failing.
    with holding(settings, "rw"):
        exported: dict[str, Any] = {}
        exporter = threading.Thread(target=lambda: exported.update(export_warehouse(settings)))
        exporter.start()
        time.sleep(1.0)
        assert exporter.is_alive() and not exported  # still waiting
    exporter.join(timeout=60)
    assert exported["written"] is True and exported["tables"]["raw_deltas"] == 600
