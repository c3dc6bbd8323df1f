"""What the load and contention tests share: their sizes and durations (CT_ASSETS_* variables), figures
printed with the machine's load, the pipeline's environment and instance, a GraphQL latency probe, peak
RSS of a command, a "notebook" reading the warehouse as the docs show, the Dagster record of runs and
ticks, a feeder's bad file, and the warehouse's own account."""

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from ct_assets.config import Settings
from ct_assets.store.warehouse import connect_reader
from ct_assets.tools.simulator import SimulationOptions, generate_rows
from ct_assets_tests.helpers.config import CHECKOUT
from ct_assets_tests.helpers.processes import stop_family
from ct_assets_tests.helpers.servers import (
    graphql,
    server_env,
    shipped_instance_config,
    write_instance_config,
)

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
