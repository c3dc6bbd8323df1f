"""The `process` section of bench/run.py: whole `ct-assets` commands timed from outside, as a user or the
daemon's run worker pays them, against plain scripts on the same rows in the same run.

One project is built with the simulator (`batches` deltas of `rows` rows, then a first forced cycle that
trains the champion; `[retrain] min_new_rows` is set out of reach so that only `--force` trains). Then, in
rounds that interleave the commands (they share the machine's noise):
- no-op: `ct-assets cycle` with nothing landed and nothing due, against `ct-assets status`;
- ingest: `ct-assets cycle` ingesting one fresh 10k-row delta (no training), against bench/ingest_script.py
  on another fresh delta of the same size (imports dagster and great_expectations, reads the file,
  validates it with ct_assets' own GX suite, appends it to DuckDB);
- forced: `ct-assets cycle --force` after one new 10k-row delta landed (ingest, train, gate, promote),
  against ../shared/bench/peer_cycle.py `--mode peer` and `--mode floor` on the same rows (every delta
  the warehouse holds: the archive folder), with the same [training] parameters.
Every figure is the wall time of a whole process (interpreter start-up included); ratios are of medians
taken in the same run.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# ../shared/bench/peer_cycle.py beside the checkout (or beside a folder of clones): the first one found
# walking up from this file.
PEER = next(
    (
        p / "shared" / "bench" / "peer_cycle.py"
        for p in Path(__file__).resolve().parents[1:]
        if (p / "shared" / "bench" / "peer_cycle.py").is_file()
    ),
    Path(__file__).resolve().parents[2] / "shared" / "bench" / "peer_cycle.py",
)
SCRIPT = Path(__file__).resolve().parent / "ingest_script.py"
DELTA_ROWS = 10_000
NO_RETRAIN = "[retrain]\nmin_new_rows = 1000000000\n"


def _cli() -> str:
    return str(Path(sys.executable).with_name("ct-assets"))


def _timed(cmd: list[str], root: Path, env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of one whole process, and its stdout; raises when it fails."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, proc.stdout


def _land(root: Path, env: dict[str, str], seed: int) -> Path:
    """One simulated delta of DELTA_ROWS rows in the landing folder; returns its path."""
    _, out = _timed(
        [_cli(), "simulate", "--batches", "1", "--rows", str(DELTA_ROWS), "--seed", str(seed)], root, env
    )
    return Path(out.strip().splitlines()[-1])


def _setup(root: Path, env: dict[str, str], batches: int, rows: int) -> dict[str, Any]:
    """The project: its config, `batches` x `rows` simulated rows, a first forced cycle (the champion), the
    peer script's spec and parameters, and each peer mode run once (its previous model plays champion)."""
    (root / "bench.toml").write_text(NO_RETRAIN)
    _timed([_cli(), "init"], root, env)
    _timed([_cli(), "simulate", "--batches", str(batches), "--rows", str(rows), "--seed", "1"], root, env)
    _timed([_cli(), "cycle", "--force", "--json"], root, env)
    # Warm-up: the first ingest run after the first champion scores the whole history (predictions).
    _land(root, env, 99)
    _timed([_cli(), "cycle", "--json"], root, env)
    _, config = _timed([_cli(), "config"], root, env)
    import tomllib

    cfg = tomllib.loads(config)
    features = list(cfg["features"])
    spec = {
        "label": cfg["columns"]["label"],
        "time": cfg["columns"]["event_time"],
        "features": features,
        "categorical": [f for f in features if cfg["features"][f]["kind"] == "categorical"],
        "golden_fraction": cfg["dataset"]["golden_fraction"],
    }
    (root / "spec.json").write_text(json.dumps(spec))
    (root / "params.json").write_text(json.dumps(cfg["training"]))
    for mode in ("peer", "floor"):
        _timed(_peer(root, mode), root, env)
    return {"rows": batches * rows}


def _peer(root: Path, mode: str) -> list[str]:
    return [
        sys.executable,
        str(PEER),
        "--mode",
        mode,
        "--deltas",
        str(root / "data" / "archive"),
        "--spec",
        str(root / "spec.json"),
        "--params",
        str(root / "params.json"),
        "--out",
        str(root / f"peer_{mode}_model.txt"),
    ]


def bench(work: Path, project: Any, batches: int, rows: int, repeats: int) -> dict[str, Any]:
    """Build the project, then `repeats` interleaved rounds of every measurement."""
    root = work / "process"
    env = project(root)
    setup = _setup(root, env, batches, rows)
    refs = root / "ref_deltas"
    refs.mkdir()
    t: dict[str, list[float]] = {
        k: [] for k in ("noop", "status", "ingest", "script", "forced", "peer", "floor", "ingest_in_cycle")
    }
    forced_runs: list[dict[str, Any]] = []
    phases: dict[str, list[dict[str, float]]] = {}  # the peer script's own seconds per phase, per run
    seed = 100
    for _ in range(repeats):
        t["noop"].append(_timed([_cli(), "cycle", "--json"], root, env)[0])
        t["status"].append(_timed([_cli(), "status", "--json"], root, env)[0])
        seed += 1
        ref = refs / _land(root, env, seed).name
        shutil.move(root / "data" / "landing" / ref.name, ref)
        t["script"].append(
            _timed([sys.executable, str(SCRIPT), str(ref), str(root / "script.duckdb")], root, env)[0]
        )
        seed += 1
        _land(root, env, seed)
        seconds, out = _timed([_cli(), "cycle", "--json"], root, env)
        result = json.loads(out.strip().splitlines()[-1])
        if result["ingested_files"] != 1 or result["challenger_version"]:
            raise RuntimeError(f"the ingest cycle did not ingest one file without training: {result}")
        t["ingest"].append(seconds)
        t["ingest_in_cycle"].append(result["ingest_seconds"])
        seed += 1
        _land(root, env, seed)
        seconds, out = _timed([_cli(), "cycle", "--force", "--json"], root, env)
        result = json.loads(out.strip().splitlines()[-1])
        forced_runs.append(
            {k: result.get(k) for k in ("verdict", "ingest_seconds", "ct_seconds")}
            | {"steps": _step_seconds(root, result["runs"])}
        )
        t["forced"].append(seconds)
        for mode in ("peer", "floor"):
            seconds, out = _timed(_peer(root, mode), root, env)
            t[mode].append(seconds)
            phases.setdefault(mode, []).append(json.loads(out.strip().splitlines()[-1])["seconds"])
    med = {k: statistics.median(v) for k, v in t.items()}
    result = {
        **setup,
        "repeats": repeats,
        "delta_rows": DELTA_ROWS,
        "runs": t,
        "median_s": med,
        "forced_runs": forced_runs,
        "peer_phases": phases,
        "ratios": {
            "ingest_vs_script": med["ingest"] / med["script"],
            "forced_vs_peer": med["forced"] / med["peer"],
            "forced_vs_floor": med["forced"] / med["floor"],
            "noop_vs_status": med["noop"] / med["status"],
        },
        "load_average": os.getloadavg()[0],
    }
    _print(result)
    return result


def _step_seconds(root: Path, runs: dict[str, str]) -> dict[str, float]:
    """Seconds of every step of the cycle's runs, and of each run from its start to its end (Dagster's
    run and step stats, read from the project's instance)."""
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    instance = DagsterInstance.from_ref(InstanceRef.from_dir(str(root / "dagster_home")))
    out: dict[str, float] = {}
    for name, run_id in runs.items():
        stats = instance.get_run_stats(run_id)
        if stats.start_time and stats.end_time:
            out[f"{name} run"] = round(stats.end_time - stats.start_time, 3)
        for step in instance.get_run_step_stats(run_id):
            if step.start_time and step.end_time:
                out[f"{name}: {step.step_key}"] = round(step.end_time - step.start_time, 3)
    return out


def _print(r: dict[str, Any]) -> None:
    m, q = r["median_s"], r["ratios"]
    print(
        f"process: no-op cycle {m['noop']:.2f} s (status {m['status']:.2f} s); ingest cycle {m['ingest']:.2f} s "
        f"vs script {m['script']:.2f} s ({q['ingest_vs_script']:.2f}x); forced cycle {m['forced']:.2f} s vs "
        f"peer {m['peer']:.2f} s ({q['forced_vs_peer']:.2f}x) and floor {m['floor']:.2f} s "
        f"({q['forced_vs_floor']:.2f}x)",
        flush=True,
    )


def lines(r: dict[str, Any]) -> list[str]:
    """The markdown section."""
    m, q, runs = r["median_s"], r["ratios"], r["runs"]

    def each(k: str) -> str:
        return ", ".join(f"{x:.2f}" for x in runs[k])

    return [
        "## Whole processes",
        "",
        f"A project of {r['rows']:,} simulated rows with its champion; deltas of {r['delta_rows']:,} rows. "
        f"Medians of {r['repeats']} interleaved rounds, wall time of whole processes; ratios of medians taken "
        f"in this run (load average {r['load_average']:.1f} at its end).",
        "",
        "| command | median s | runs | reference | reference s | ratio |",
        "|---|---|---|---|---|---|",
        f"| `ct-assets cycle`, nothing to do | {m['noop']:.2f} | {each('noop')} | `ct-assets status` | "
        f"{m['status']:.2f} | {q['noop_vs_status']:.2f} |",
        f"| `ct-assets cycle`, one delta ingested, no training | {m['ingest']:.2f} | {each('ingest')} | "
        f"bench/ingest_script.py | {m['script']:.2f} | **{q['ingest_vs_script']:.2f}** (target at most 1.25) |",
        f"| `ct-assets cycle --force` after one new delta | {m['forced']:.2f} | {each('forced')} | "
        f"peer_cycle.py --mode peer | {m['peer']:.2f} | **{q['forced_vs_peer']:.2f}** (target at most 1.0) |",
        f"| | | | peer_cycle.py --mode floor | {m['floor']:.2f} | {q['forced_vs_floor']:.2f} |",
        "",
        f"Inside the ingest cycle, up to the end of its ingest run: {each('ingest_in_cycle')} s. "
        f"Forced cycles: {'; '.join(json.dumps({k: v for k, v in x.items() if k != 'steps'}) for x in r['forced_runs'])}.",
        "",
        *_forced_lines(r),
    ]


def _forced_lines(r: dict[str, Any]) -> list[str]:
    """Where a forced cycle's seconds go (medians of its runs' step stats), beside the peer's phases."""
    steps: dict[str, list[float]] = {}
    for run in r["forced_runs"]:
        for k, v in run.get("steps", {}).items():
            steps.setdefault(k, []).append(v)
    peer: dict[str, list[float]] = {}
    for ph in r.get("peer_phases", {}).get("peer", []):
        for k, v in ph.items():
            peer.setdefault(k, []).append(v)
    if not steps:
        return []
    out = ["| forced cycle: run or step | median s | peer script: phase | median s |", "|---|---|---|---|"]
    left = sorted(steps, key=lambda k: (" run" not in k, k))
    right = list(peer)
    for i in range(max(len(left), len(right))):
        a = f"{left[i]} | {statistics.median(steps[left[i]]):.2f}" if i < len(left) else " | "
        b = f"{right[i]} | {statistics.median(peer[right[i]]):.2f}" if i < len(right) else " | "
        out.append(f"| {a} | {b} |")
    return [*out, ""]
