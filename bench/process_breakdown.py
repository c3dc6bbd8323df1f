"""Where the seconds of a whole `ct-assets cycle` process go: each fixed cost timed in processes of its own.

    python bench/process_breakdown.py [--repeats 5]   # in a project: CT_ASSETS_CONFIG and DAGSTER_HOME set

Each figure is the median wall time of a fresh interpreter that does only that much (so an import is paid
cold, as every run worker pays it). The last
lines time the steps of the newest ingest run in the instance (from Dagster's step stats) and the
no-op cycle's phases measured inside one process. DAGSTER_HOME must name the project's instance. Prints
one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

PROBES = {
    "interpreter": "pass",
    "import dagster": "import dagster",
    "dagster instance (import dagster, load, list runs)": (
        "import dagster as dg\ndg.DagsterInstance.get().get_runs(limit=1)"
    ),
    "definitions (import ct_assets.definitions, build defs)": "import ct_assets.definitions as d\nd.defs",
    "import great_expectations": "import great_expectations",
    "import lightgbm": "import lightgbm",
    "import pandas": "import pandas",
    "import scipy.stats": "import scipy.stats",
    "import polars, duckdb": "import polars, duckdb",
    "CLI modules of cycle (import ct_assets.commands.cycle)": "import ct_assets.commands.cycle",
}

NOOP_PHASES = """
import json, time
t0 = time.perf_counter()
import ct_assets.commands.cycle as c
from ct_assets.config import load_settings
from ct_assets.core.triggers.decision import retrain_decision
from ct_assets.store.warehouse import connect_reader
t1 = time.perf_counter()
s = load_settings()
t2 = time.perf_counter()
c.check_config(s)
t3 = time.perf_counter()
run_recovery = getattr(c, "_recover_dead_runs", None) or c.recover
run_recovery()
t4 = time.perf_counter()
with connect_reader(s, wait_seconds=30) as con:
    retrain_decision(con, s)
t5 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "settings": t2 - t1, "writer connect (config check)": t3 - t2,
                  "dead-run recovery": t4 - t3, "retrain decision (reader connect)": t5 - t4}))
"""

INGEST_STEPS = """
import json
import dagster as dg
inst = dg.DagsterInstance.get()
run = inst.get_runs(filters=dg.RunsFilter(job_name="ingest_job"), limit=1)[0]
stats = inst.get_run_stats(run.run_id)
steps = {s.step_key: s.end_time - s.start_time for s in inst.get_run_step_stats(run.run_id)}
print(json.dumps({"run": stats.end_time - stats.start_time, **steps}))
"""


def _seconds(code: str) -> float:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"{code!r} failed:\n{proc.stderr[-2000:]}")
    return seconds


def _json(code: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    probes = PROBES
    times: dict[str, list[float]] = {k: [] for k in probes}
    phases: dict[str, list[float]] = {}
    for _ in range(a.repeats):  # round-robin: the probes share the machine's noise
        for name, code in probes.items():
            times[name].append(_seconds(code))
        for name, sec in _json(NOOP_PHASES).items():
            phases.setdefault(name, []).append(sec)
    out = {k: round(statistics.median(v), 3) for k, v in times.items()}
    out["no-op cycle, inside one process"] = {k: round(statistics.median(v), 3) for k, v in phases.items()}
    out["newest ingest run (step stats)"] = {k: round(v, 3) for k, v in _json(INGEST_STEPS).items()}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
