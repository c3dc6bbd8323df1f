"""The plots of docs/decision_quality.md: per scenario, each policy's metric over the steps, averaged over
the seeds, from the raw results `bench/decision_quality.py --out F.md` writes beside F (F.json).

    python bench/decision_quality_plots.py RESULTS.json [...] --dir docs/img

Writes one SVG per scenario (decision_quality_<scenario>.svg) and prints the markdown lines that show them.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from ct_assets.tools.backtest_report import policy_curves_svg

POLICIES = ("served", "always_promote", "never_retrain", "every_n")


def mean_curves(runs: list[dict]) -> tuple[str, dict[str, list[tuple[int, float]]], int]:
    """Per policy, (step, mean over seeds of the metric on the next step's rows) over scored steps."""
    values: dict[str, dict[int, list[float]]] = {p: defaultdict(list) for p in POLICIES}
    for run in runs:
        for s in run["result"]["per_step"]:
            if s["scored"]:
                for p in POLICIES:
                    if s.get(p) is not None:
                        values[p][s["step"]].append(s[p])
    curves = {p: sorted((k, statistics.fmean(v)) for k, v in values[p].items()) for p in POLICIES}
    return runs[0]["result"]["metric"], curves, len(runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("results", type=Path, nargs="+", help="raw results (.json) of decision_quality.py --out")
    ap.add_argument("--dir", type=Path, default=Path("docs/img"), help="where the SVGs go")
    args = ap.parse_args()
    by_scenario: dict[str, list[dict]] = defaultdict(list)
    for f in args.results:
        for run in json.loads(f.read_text()):
            by_scenario[run["scenario"]].append(run)
    args.dir.mkdir(parents=True, exist_ok=True)
    for scenario, runs in by_scenario.items():
        metric, curves, n = mean_curves(runs)
        seeds = f"mean over {n} seeds" if n > 1 else "one replay"
        path = args.dir / f"decision_quality_{scenario}.svg"
        steps = sorted({k for c in curves.values() for k, _ in c})
        plot = policy_curves_svg(
            curves,
            ticks=steps,
            x_label=f"step k: the model in force after step k, its {metric} on step k+1's labelled rows",
            aria_label=f"{scenario}: {metric} per step",
            title=f"{scenario}: {metric} per step ({seeds})",
            width=760,
            height=310,
        )
        path.write_text(plot + "\n")
        print(f"![{scenario}]({path.relative_to(args.dir.parent) if args.dir.parent.name else path})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
