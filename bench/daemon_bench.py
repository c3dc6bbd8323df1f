"""The `daemon` section of bench/run.py: the path of a landed delta through the real `dagster-daemon`, from
the file becoming ready to its rows being committed, phase by phase, p50 and p95 over every delta.

    python bench/daemon_bench.py --deltas 20                       # the shipped instance settings
    python bench/daemon_bench.py --deltas 20 --dequeue-interval 1  # the run queue polled every second

One project is built with the simulator (`batches` deltas of `rows` rows and a first forced cycle: the
champion, so that every ingest run also scores the new rows and the champion, as in production;
`[retrain] min_new_rows` is out of reach and decay off, so that only ingest runs happen). Its
DAGSTER_HOME holds the dagster.yaml ct_assets ships (SQLite storage, the run queue), optionally with the
run queue's `dequeue_interval_seconds` set. `dagster-daemon run` then runs on the project's workspace
with its sensors as shipped, and `deltas` simulated deltas are made ready one at a time (renamed into the
landing folder, as a producer does), each after the previous one's run ended, at a random offset within
the sensor daemon's 5 s loop.

Every timestamp comes from the instance or from the run's own records, none from this script's clock
except "ready" (the rename): the landing sensor's tick that requested the run (its start), the run's
RUN_ENQUEUED, RUN_STARTING (the daemon takes it off the queue and launches it), the run worker's "Started process" engine event (its
interpreter started, dagster imported, the instance loaded), RUN_START (the definitions loaded and the
job planned), raw_deltas' STEP_START, and the file's `validated_at` / `committed_at` in raw_deltas'
materialization (the ingest's own wall clock after validation and after its DuckDB transaction
committed), then RUN_SUCCESS (predictions and champion_performance done).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DELTA_ROWS = 10_000
CONFIG = "[retrain]\nmin_new_rows = 1000000000\ndecay_margin = 1.0\n"
SHIPPED_YAML = Path(__file__).resolve().parents[1] / "ct_assets" / "dagster_instance.yaml"
# (phase, from, to): consecutive marks of one delta's path
PHASES = [
    ("sensor wait (ready -> tick)", "ready", "tick"),
    ("sensor tick -> run queued", "tick", "enqueued"),
    ("run queue (queued -> launched)", "enqueued", "starting"),
    ("process start, import dagster, instance", "starting", "process"),
    ("definitions load, job plan", "process", "run_start"),
    ("run setup to the ingest step", "run_start", "step_start"),
    ("imports, read, GX validation", "step_start", "validated"),
    ("append and commit", "validated", "committed"),
]
TOTALS = [
    ("tick -> rows committed", "tick", "committed"),
    ("ready -> rows committed", "ready", "committed"),
    ("rows committed -> run success", "committed", "success"),
]


def _cli(name: str = "ct-assets") -> str:
    return str(Path(sys.executable).with_name(name))


def _run(cmd: list[str], root: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout


def _setup(
    root: Path, batches: int, rows: int, deltas: int, dequeue: int | None, settings: dict[str, Any]
) -> dict[str, str]:
    """The project, its champion, and `deltas` simulated deltas waiting in `root/staged`; the instance's
    run queue interval goes into `settings`."""
    root.mkdir(parents=True)
    home = root / "dagster_home"
    home.mkdir()
    instance_yaml = SHIPPED_YAML.read_text()
    if dequeue is not None:
        instance_yaml = instance_yaml.replace(
            "run_queue:\n", f"run_queue:\n  dequeue_interval_seconds: {dequeue}\n"
        )
    (home / "dagster.yaml").write_text(instance_yaml)
    import yaml

    queue = (yaml.safe_load(instance_yaml) or {}).get("run_queue") or {}
    settings["dequeue_interval_seconds"] = queue.get("dequeue_interval_seconds", 5)  # Dagster's default: 5
    (root / "bench.toml").write_text(CONFIG)
    (root / "workspace.yaml").write_text(
        "load_from:\n  - python_module:\n      module_name: ct_assets.definitions\n      location_name: ct_assets\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_ASSETS", "DAGSTER"))}
    env.update(DAGSTER_HOME=str(home), CT_ASSETS_CONFIG=str(root / "bench.toml"))
    _run([_cli(), "init"], root, env)
    _run([_cli(), "simulate", "--batches", str(batches), "--rows", str(rows), "--seed", "1"], root, env)
    _run([_cli(), "cycle", "--force", "--json"], root, env)
    # Warm-up: the first ingest after the first champion scores the whole history (predictions).
    _run([_cli(), "simulate", "--batches", "1", "--rows", str(DELTA_ROWS), "--seed", "2"], root, env)
    _run([_cli(), "cycle", "--json"], root, env)
    _run([_cli(), "simulate", "--batches", str(deltas), "--rows", str(DELTA_ROWS), "--seed", "3"], root, env)
    staged = root / "staged"
    staged.mkdir()
    for f in sorted((root / "data" / "landing").iterdir()):
        shutil.move(f, staged / f.name)
    return env


def _instance(root: Path) -> Any:
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    return DagsterInstance.from_ref(InstanceRef.from_dir(str(root / "dagster_home")))


def _landing_ticks(instance: Any, after: float) -> list[Any]:
    from dagster._core.scheduler.instigation import InstigatorType

    states = [
        s
        for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        if s.instigator_name == "landing_sensor"
    ]
    return [t for s in states for t in instance.get_ticks(s.instigator_origin_id, s.selector_id, after=after)]


def _wait_run(instance: Any, known: set[str], timeout: float) -> Any:
    """The new ingest run, once it has ended."""
    import dagster as dg

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in instance.get_runs(filters=dg.RunsFilter(job_name="ingest_job"), limit=5)]
        new = [r for r in runs if r.run_id not in known]
        if new and new[0].is_finished:
            return new[0]
        time.sleep(0.2)
    raise RuntimeError(f"no ingest run ended within {timeout:.0f} s")


def _marks(instance: Any, run: Any, ready: float, ticks: list[Any]) -> dict[str, float]:
    """Every mark of one delta's path (epoch seconds)."""
    from dagster import DagsterEventType as T

    marks = {"ready": ready}
    tick = [t for t in ticks if run.run_id in t.run_ids]
    if not tick:
        raise RuntimeError(f"no landing_sensor tick names run {run.run_id}")
    marks["tick"] = tick[0].timestamp
    names = {
        T.PIPELINE_ENQUEUED: "enqueued",
        T.PIPELINE_STARTING: "starting",
        T.PIPELINE_START: "run_start",
        T.PIPELINE_SUCCESS: "success",
    }
    for e in instance.all_logs(run.run_id):
        ev = e.dagster_event
        if ev is None:
            continue
        if ev.event_type in names:
            marks.setdefault(names[ev.event_type], e.timestamp)
        elif ev.event_type == T.ENGINE_EVENT and (ev.message or "").startswith("Started process for run"):
            marks.setdefault("process", e.timestamp)
        elif ev.event_type == T.STEP_START and ev.step_key == "raw_deltas":
            marks["step_start"] = e.timestamp
        elif ev.event_type == T.ASSET_MATERIALIZATION and ev.asset_key.path == ["raw_deltas"]:
            (row,) = ev.event_specific_data.materialization.metadata["files"].value.records
            for k, name in (("validated_at", "validated"), ("committed_at", "committed")):
                when = datetime.fromisoformat(row.data[k].rstrip("Z")).replace(tzinfo=UTC)
                marks[name] = when.timestamp()
    missing = {m for _, a, b in PHASES + TOTALS for m in (a, b)} - set(marks)
    if missing:
        raise RuntimeError(f"run {run.run_id} ({run.status}) lacks {sorted(missing)}")
    return marks


def _stop(proc: subprocess.Popen) -> None:
    """The daemon's process group (it, its code server and run workers): SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=30)
            time.sleep(1)
        except subprocess.TimeoutExpired:
            continue


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def bench(
    work: Path, batches: int, rows: int, deltas: int, dequeue: int | None = None, seed: int = 1
) -> dict:
    """Build the project, run the daemon, land `deltas` deltas one at a time; the phases' p50 and p95."""
    root = Path(tempfile.mkdtemp(prefix="daemon-", dir=work))
    shutil.rmtree(root)
    from ct_assets.defs.sensors import LANDING_INTERVAL_SECONDS

    settings: dict[str, Any] = {"landing_sensor_min_interval": LANDING_INTERVAL_SECONDS}
    env = _setup(root, batches, rows, deltas, dequeue, settings)
    instance = _instance(root)
    rng = random.Random(seed)
    log = (root / "daemon.log").open("wb")
    started = time.time()
    proc = subprocess.Popen(
        [_cli("dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    samples: list[dict[str, float]] = []
    try:
        deadline = time.monotonic() + 300
        while not _landing_ticks(instance, started):  # the daemon, its code server and a first tick
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon did not tick: {(root / 'daemon.log').read_text()[-3000:]}")
            time.sleep(0.5)
        known = {r.run_id for r in instance.get_runs()}
        for f in sorted((root / "staged").iterdir()):
            time.sleep(rng.uniform(0, 5))  # a random phase of the sensor loop
            ready = time.time()
            os.rename(f, root / "data" / "landing" / f.name)
            run = _wait_run(instance, known, timeout=600)
            known.add(run.run_id)
            if not run.is_success:
                raise RuntimeError(f"ingest run {run.run_id} ended {run.status}")
            samples.append(_marks(instance, run, ready, _landing_ticks(instance, started)))
    finally:
        _stop(proc)
        log.close()
    others = [r.job_name for r in instance.get_runs() if r.run_id not in known]
    result = {
        "deltas": len(samples),
        "delta_rows": DELTA_ROWS,
        "rows": batches * rows,
        **settings,
        "phases": {},
        "other_runs": others,
        "load_average": os.getloadavg()[0],
    }
    for name, a, b in PHASES + TOTALS:
        values = [m[b] - m[a] for m in samples]
        result["phases"][name] = {"p50": statistics.median(values), "p95": _pct(values, 0.95), "runs": values}
    _print(result)
    return result


def _print(r: dict[str, Any]) -> None:
    print(f"daemon path, {r['deltas']} deltas of {r['delta_rows']:,} rows, {_setting(r)}:", flush=True)
    for name, v in r["phases"].items():
        print(f"  {name:45s} p50 {v['p50']:6.2f} s  p95 {v['p95']:6.2f} s", flush=True)


def _setting(r: dict[str, Any]) -> str:
    return (
        f"run queue every {r['dequeue_interval_seconds']} s, landing sensor minimum interval "
        f"{r['landing_sensor_min_interval']} s"
    )


def lines(results: list[dict[str, Any]]) -> list[str]:
    """The markdown section: one column pair per setting measured."""
    head = "| phase | " + " | ".join(
        f"queue {r['dequeue_interval_seconds']} s, sensor {r['landing_sensor_min_interval']} s: p50 | p95"
        for r in results
    )
    out = [
        "## The daemon path",
        "",
        f"The real `dagster-daemon run` with the project's sensors; {results[0]['deltas']} deltas of "
        f"{results[0]['delta_rows']:,} rows made ready one at a time on a project of {results[0]['rows']:,} rows "
        "with its champion (bench/daemon_bench.py; timestamps from the event log, the sensor's ticks and the "
        "ingest's own records). Seconds.",
        "",
        head + " |",
        "|---|" + "---|---|" * len(results),
    ]
    for name, _, _ in PHASES + TOTALS:
        cells = " | ".join(
            f"{r['phases'][name]['p50']:.2f} | {r['phases'][name]['p95']:.2f}" for r in results
        )
        out.append(f"| {name} | {cells} |")
    loads = ", ".join(f"{r['load_average']:.1f}" for r in results)
    out += [
        "",
        f"Load average at the end of each setting: {loads}. Other runs: "
        f"{'; '.join(str(r['other_runs']) for r in results)}.",
        "",
    ]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deltas", type=int, default=20)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dequeue-interval", type=int, default=None, help="run_queue.dequeue_interval_seconds")
    ap.add_argument("--json", type=Path, default=None, help="write the result here")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ct-daemon-bench-"))
    try:
        r = bench(work, a.batches, a.rows, a.deltas, a.dequeue_interval)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        a.json.write_text(json.dumps(r))
    print("\n".join(lines([r])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
