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

from ct_assets.tools.backtest_report import COLORS, LABELS, esc

POLICIES = ("served", "always_promote", "never_retrain", "every_n")
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 760, 300, 56, 16, 24, 58


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


def svg(title: str, metric: str, curves: dict[str, list[tuple[int, float]]]) -> str:
    """A line per policy; the loop's (served) drawn last, thick."""
    points = [v for c in curves.values() for _, v in c]
    steps = [k for c in curves.values() for k, _ in c]
    lo, hi = min(points), max(points)
    pad = (hi - lo) * 0.08 or 0.01
    lo, hi = lo - pad, hi + pad
    x0, x1 = min(steps), max(steps)
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(k: float) -> float:
        return LEFT + (k - x0) / ((x1 - x0) or 1) * w

    def sy(v: float) -> float:
        return TOP + (1 - (v - lo) / (hi - lo)) * h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif">',
        f'<text x="{LEFT}" y="16" font-size="13" font-weight="bold">{esc(title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{w}" height="{h}" fill="#fff" stroke="#d0d7de"/>',
    ]
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        out.append(
            f'<line x1="{LEFT}" y1="{sy(v):.1f}" x2="{LEFT + w}" y2="{sy(v):.1f}" stroke="#eaeef2"/>'
            f'<text x="{LEFT - 5}" y="{sy(v) + 4:.1f}" font-size="10" text-anchor="end">{v:.3f}</text>'
        )
    for k in sorted(set(steps)):
        out.append(f'<text x="{sx(k):.1f}" y="{TOP + h + 14}" font-size="10" text-anchor="middle">{k}</text>')
    out.append(
        f'<text x="{LEFT + w / 2}" y="{TOP + h + 30}" font-size="11" text-anchor="middle">'
        f"step k: the model in force after step k, its {esc(metric)} on step k+1's labelled rows</text>"
    )
    for p in reversed(POLICIES):
        path = " ".join(f"{sx(k):.1f},{sy(v):.1f}" for k, v in curves[p])
        dash = "" if p in ("served", "always_promote") else ' stroke-dasharray="5 3"'
        width = 3 if p == "served" else 1.5
        out.append(
            f'<polyline fill="none" stroke="{COLORS[p]}" stroke-width="{width}"{dash} points="{path}"/>'
        )
    for i, p in enumerate(POLICIES):
        x = LEFT + i * 170
        out.append(
            f'<rect x="{x}" y="{HEIGHT - 12}" width="14" height="4" fill="{COLORS[p]}"/>'
            f'<text x="{x + 20}" y="{HEIGHT - 7}" font-size="11">{esc(LABELS[p])}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


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
        path.write_text(svg(f"{scenario}: {metric} per step ({seeds})", metric, curves))
        print(f"![{scenario}]({path.relative_to(args.dir.parent) if args.dir.parent.name else path})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
