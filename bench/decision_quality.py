"""What the loop's decisions are worth: issue 12's acceptance scenarios, backtested against baselines.

For each drift mode and seed: simulate a fresh stream of delta files (`ct-assets simulate --drift MODE`)
with the default configuration (or `--config`), replay it with `ct-assets backtest --json`, and tabulate per mode the
served model's mean metric on each next step (mean ± sd over seeds) beside always-promote,
never-retrain and every-N, the better baseline, and served minus it. Or, with `--deltas DIR --config
TOML`, the same figures for a folder of real delta files.

    python bench/decision_quality.py                                  # the acceptance matrix (over an hour)
    python bench/decision_quality.py --modes 0,0.5 --seeds 1 --batches 6 --rows 3000   # a quick check
    python bench/decision_quality.py ... --config quick.toml    # e.g. [retrain] min_new_rows = 2000
    python bench/decision_quality.py --deltas bench/data/real --config bench/real.toml --name "real data"
    ... --out docs/decision_quality.md   # also write the markdown (and the raw results as .json beside it)

Definitions:
- step k lands file k and runs one cycle; each policy's model in force after step k is scored on the
  labelled rows of file k+1 (labels as known at the end of the replay);
- the better baseline is the best of always-promote, never-retrain and every-N by mean over seeds;
  "pass" means served >= better baseline - 0.005 (issue 12's acceptance rule);
- `sudden`: `--change-batch B` is the first batch drawn after the change point (default 12). Step B-1
  (scored on batch B: every policy still serves a pre-change model) and step B (scored on batch B+1:
  only batch B has shown the change, which a rule that waits for confirmation may hold back) are
  reported apart; step B, the one step right after the change, is left out of the comparison;
- `poison`: on how many seeds served beats always-promote (issue 12: at least 4 of 5).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

POLICIES = ("served", "always_promote", "never_retrain", "every_n")
BASELINES = POLICIES[1:]
LOWER_IS_BETTER = {"log_loss", "brier"}
MARGIN = 0.005  # issue 12: served mean at least the better baseline's minus this
TIMEOUT_PER_STEP = 900  # seconds: a step of 20,000 rows takes about 10-30 s here


def ct_assets() -> str:
    """The console script beside the interpreter running this script."""
    found = shutil.which(
        "ct-assets", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    if not found:
        sys.exit("decision_quality: ct-assets is not installed beside this Python (run `make setup`)")
    return found


def _env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CT_ASSETS")}
    env["CT_ASSETS_CONFIG"] = str(config)
    return env


def _run(args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"`{shlex.join(args[1:])}` exited {proc.returncode}: {tail}")
    return proc


# --------------------------------------------------------------------------------------------- one run


def simulate(
    folder: Path, mode: str, seed: int, batches: int, rows: int, timeout: float, base: Path | None = None
) -> Path:
    """A fresh stream of `batches` delta files in folder/deltas, with the configuration `base` (default:
    the built-in one), its landing and state folders moved into `folder`."""
    tables = tomllib.loads(base.read_text()) if base else {}
    tables["paths"] = {
        **tables.get("paths", {}),
        "landing": str(folder / "deltas"),
        "state": str(folder / "state"),
    }
    config = folder / "simulate.toml"
    config.write_text(tomli_w.dumps(tables))
    _run(
        [
            ct_assets(),
            "simulate",
            "--batches",
            str(batches),
            "--rows",
            str(rows),
            "--seed",
            str(seed),
            "--drift",
            mode,
        ],
        _env(config),
        timeout,
    )
    return folder / "deltas"


def backtest(deltas: Path, config: Path | None, every: int, timeout: float) -> dict[str, Any]:
    """`ct-assets backtest DELTAS --json`, its one JSON line parsed."""
    env = _env(config) if config else {k: v for k, v in os.environ.items() if not k.startswith("CT_ASSETS")}
    proc = _run([ct_assets(), "backtest", str(deltas), "--json", "--every", str(every)], env, timeout)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if len(lines) != 1:
        raise RuntimeError(f"backtest printed {len(lines)} lines on stdout, expected one JSON line")
    return json.loads(lines[0])


# ------------------------------------------------------------------------------------------ statistics


@dataclass
class Run:
    """One backtest: its per-policy means over the compared steps, and the steps set apart."""

    scenario: str
    seed: int | None
    result: dict[str, Any]
    apart: list[int] = field(default_factory=list)  # steps reported apart
    left_out: list[int] = field(default_factory=list)  # steps left out of the comparison

    def compared(self) -> list[dict[str, Any]]:
        """The scored steps that enter the comparison."""
        return [s for s in self.result["per_step"] if s["scored"] and s["step"] not in self.left_out]

    def means(self) -> dict[str, float]:
        steps = self.compared()
        return {p: statistics.fmean(s[p] for s in steps) for p in POLICIES} if steps else {}

    def step(self, k: int) -> dict[str, Any] | None:
        return next((s for s in self.result["per_step"] if s["step"] == k and s["scored"]), None)


def _better(metric: str, a: float, b: float) -> bool:
    return a < b if metric in LOWER_IS_BETTER else a > b


def _fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"


def summarize(scenario: str, runs: list[Run]) -> dict[str, Any]:
    """One table row: per policy the mean (± sd) over seeds, the better baseline, served minus it."""
    metric = runs[0].result["metric"]
    per_policy = {p: [r.means()[p] for r in runs if r.means()] for p in POLICIES}
    mean = {p: statistics.fmean(v) if v else math.nan for p, v in per_policy.items()}
    pick = min if metric in LOWER_IS_BETTER else max
    best = pick(BASELINES, key=lambda p: mean[p])
    gain = (mean[best] - mean["served"]) if metric in LOWER_IS_BETTER else (mean["served"] - mean[best])
    beats_ap = sum(
        1 for r in runs if r.means() and _better(metric, r.means()["served"], r.means()["always_promote"])
    )
    return {
        "scenario": scenario,
        "metric": metric,
        "seeds": [r.seed for r in runs],
        "cells": {p: _fmt(v) for p, v in per_policy.items()},
        "mean": mean,
        "best_baseline": best,
        "served_minus_best": gain,
        "pass": gain >= -MARGIN,
        "served_beats_always_promote": f"{beats_ap} of {len(runs)}",
        "steps": statistics.fmean(len(r.compared()) for r in runs),
        "seconds_per_step": statistics.fmean(r.result["seconds_per_step"] for r in runs),
        "verdicts": {
            k: sum(r.result[k] for r in runs) for k in ("trainings", "promotions", "blocked", "failed")
        },
    }


def markdown(rows: list[dict[str, Any]], apart: list[tuple[str, Run]], command: str) -> str:
    out = [
        f"Made with: `{command}`",
        "",
        "| scenario | seeds | steps compared | served | always_promote | never_retrain | every_n | "
        "better baseline | served − better | pass (≥ −0.005) | served beats always-promote | "
        "trainings / promoted / blocked / failed | s per step |",
        "| --- | --- | ---: | --- | --- | --- | --- | --- | ---: | --- | --- | --- | ---: |",
    ]
    for r in rows:
        v = r["verdicts"]
        seeds = ", ".join(str(s) for s in r["seeds"] if s is not None) or "-"
        out.append(
            f"| {r['scenario']} | {seeds} | {r['steps']:.0f} | "
            + " | ".join(r["cells"][p] for p in POLICIES)
            + f" | {r['best_baseline']} | {r['served_minus_best']:+.4f} | {'yes' if r['pass'] else 'NO'} | "
            f"{r['served_beats_always_promote']} | {v['trainings']} / {v['promotions']} / {v['blocked']} / "
            f"{v['failed']} | {r['seconds_per_step']:.1f} |"
        )
    if apart:
        out += [
            "",
            "Steps reported apart (`sudden`; step B-1 is compared, step B is left out):",
            "",
            "| scenario | seed | step | scored on file | served | always_promote | never_retrain | every_n | verdict |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for scenario, run in apart:
            for k in run.apart:
                s = run.step(k)
                if s is None:
                    out.append(f"| {scenario} | {run.seed} | {k} | {k + 1} | not scored |  |  |  |  |")
                    continue
                cells = " | ".join(f"{s[p]:.4f}" for p in POLICIES)
                left = " (left out)" if k in run.left_out else ""
                out.append(f"| {scenario} | {run.seed} | {k}{left} | {k + 1} | {cells} | {s['verdict']} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------------------------- driver


def _seeds(text: str) -> list[int]:
    """`5` -> 1..5; `1,3` -> [1, 3]; `2-4` -> [2, 3, 4]."""
    if "," in text:
        return [int(x) for x in text.split(",") if x.strip()]
    if "-" in text:
        lo, hi = text.split("-", 1)
        return list(range(int(lo), int(hi) + 1))
    return list(range(1, int(text) + 1))


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--modes", default="seasonal,sudden,gradual,poison", help="drift modes, comma-separated")
    ap.add_argument(
        "--seeds", default="5", help="N (seeds 1..N), or a list 1,3,5, or a range 2-4 (default 5)"
    )
    ap.add_argument("--batches", type=int, default=24, help="delta files per stream (default 24)")
    ap.add_argument("--rows", type=int, default=20_000, help="rows per delta file (default 20,000)")
    ap.add_argument("--every", type=int, default=3, help="the every-N baseline's N (default 3)")
    ap.add_argument("--change-batch", type=int, default=12, help="sudden: first batch after the change (12)")
    ap.add_argument("--deltas", type=Path, help="a folder of real delta files instead of the simulator")
    ap.add_argument(
        "--config",
        type=Path,
        help="the configuration (CT_ASSETS_CONFIG of the replay; default: the built-in one, as the acceptance "
        "scenarios want); with simulated streams, a quick check may lower [retrain] min_new_rows here",
    )
    ap.add_argument("--name", default=None, help="the scenario name of --deltas (default: the folder's name)")
    ap.add_argument(
        "--keep", type=Path, default=None, help="keep each stream and its backtest.html under DIR"
    )
    ap.add_argument(
        "--out", type=Path, default=None, help="also write the markdown here (and raw results .json)"
    )
    ap.add_argument(
        "--tabulate",
        type=Path,
        nargs="+",
        default=None,
        help="no replay: tabulate the raw results (.json) earlier runs wrote with --out, scenarios merged",
    )
    args = ap.parse_args(argv)
    return args


def _scenario_runs(
    args: argparse.Namespace, root: Path
) -> tuple[list[dict[str, Any]], list[tuple[str, Run]], list[dict]]:
    rows: list[dict[str, Any]] = []
    apart: list[tuple[str, Run]] = []
    raw: list[dict] = []
    timeout = TIMEOUT_PER_STEP * max(args.batches, 2)
    if args.deltas:
        name = args.name or args.deltas.resolve().name
        started = time.perf_counter()
        run = Run(
            name,
            None,
            backtest(
                args.deltas.resolve(),
                args.config.resolve() if args.config else None,
                args.every,
                timeout * 50,
            ),
        )
        print(
            f"{name}: served {run.means().get('served', math.nan):.4f} ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
        )
        rows.append(summarize(name, [run]))
        raw.append({"scenario": name, "seed": None, "result": run.result})
        return rows, apart, raw
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        runs = []
        for seed in _seeds(args.seeds):
            folder = root / f"{mode}-seed{seed}"
            folder.mkdir(parents=True)
            started = time.perf_counter()
            config = args.config.resolve() if args.config else None
            deltas = simulate(folder, mode, seed, args.batches, args.rows, timeout, config)
            run = Run(mode, seed, backtest(deltas, config, args.every, timeout))
            if mode == "sudden":
                b = args.change_batch
                run.apart, run.left_out = [b - 1, b], [b]
                apart.append((mode, run))
            runs.append(run)
            raw.append({"scenario": mode, "seed": seed, "result": run.result})
            m = run.means()
            print(
                f"{mode} seed {seed}: served {m.get('served', math.nan):.4f}, always_promote "
                f"{m.get('always_promote', math.nan):.4f}, never_retrain {m.get('never_retrain', math.nan):.4f}, "
                f"every_n {m.get('every_n', math.nan):.4f} ({time.perf_counter() - started:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        rows.append(summarize(mode, runs))
    return rows, apart, raw


def _run_of(raw: dict, change_batch: int) -> Run:
    """A Run again from its raw record (as --out writes them); `sudden` sets its steps apart as a replay does."""
    run = Run(raw["scenario"], raw["seed"], raw["result"])
    if run.scenario == "sudden":
        run.apart, run.left_out = [change_batch - 1, change_batch], [change_batch]
    return run


def tabulate(files: list[Path], change_batch: int) -> tuple[list[dict[str, Any]], list[tuple[str, Run]]]:
    """The table rows and the steps set apart of the raw results in `files`, one row per scenario."""
    by_scenario: dict[str, list[Run]] = {}
    for f in files:
        for raw in json.loads(f.read_text()):
            by_scenario.setdefault(raw["scenario"], []).append(_run_of(raw, change_batch))
    rows, apart = [], []
    for scenario, runs in by_scenario.items():
        runs.sort(key=lambda r: r.seed or 0)
        rows.append(summarize(scenario, runs))
        apart += [(scenario, r) for r in runs if r.apart]
    return rows, apart


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.tabulate:
        rows, apart = tabulate(args.tabulate, args.change_batch)
        command = "python bench/decision_quality.py --tabulate " + " ".join(str(f) for f in args.tabulate)
        text = markdown(rows, apart, command)
        print(text)
        if args.out:
            args.out.write_text(text)
        return 0
    command = "python bench/decision_quality.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    keep = args.keep.resolve() if args.keep else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ct-decision-quality-") as tmp:
        try:
            rows, apart, raw = _scenario_runs(args, keep or Path(tmp))
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(f"decision_quality: {e}", file=sys.stderr)
            return 1
    text = markdown(rows, apart, command)
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, default=str))
        print(f"written: {args.out} and {args.out.with_suffix('.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
