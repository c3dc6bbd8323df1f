"""The validation report as one self-contained HTML file: inline CSS, inline SVG plots, no network.

Every value that comes from the data or the configuration (slice names, categories, versions) is
escaped before it enters the page.
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from ct_assets.core.gate import stats
from ct_assets.core.gate.results import EvalSet, GateResult
from ct_assets.core.gate.stats import as_probabilities

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#1f2328}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.verdict{padding:12px 16px;border-radius:8px;font-size:16px;margin:12px 0}
.pass{background:#dafbe1;border:1px solid #4ac26b}.block{background:#ffebe9;border:1px solid #ff8182}
table{border-collapse:collapse;margin:6px 0;font-size:13px}td,th{border:1px solid #d0d7de;padding:3px 7px;text-align:right}
th{background:#f6f8fa}td.l,th.l{text-align:left}.bad{color:#cf222e;font-weight:600}.ok{color:#1a7f37}
.muted{color:#656d76}.plots{display:flex;flex-wrap:wrap;gap:18px}figure{margin:0}figcaption{font-size:12px;color:#656d76}
code{background:#f6f8fa;padding:1px 4px;border-radius:4px}
"""
CHAMPION_COLOR, CHALLENGER_COLOR = "#8250df", "#0969da"
STATUS_TEXT = {
    "insufficient": "insufficient evidence",
    "underpowered": "insufficient evidence (underpowered; not clearly worse)",
    "no_champion": "no champion",
    "not_compared": "not compared: no row both models can score",
}


# The shadow evaluation on live rows is filled in later, by the ingest runs that shadow-score this
# challenger while it awaits promotion or review (core.gate.shadow_section replaces what is between these).
SHADOW_START, SHADOW_END = "<!-- shadow-evaluation -->", "<!-- /shadow-evaluation -->"
SHADOW_PLACEHOLDER = (
    "<h2>Shadow evaluation on live rows</h2><p class='muted'>None yet. While this challenger awaits "
    "promotion or review, every ingest run scores the rows that land with it beside the champion; the "
    "comparison appears here.</p>"
)


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(x: Any, digits: int = 4, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def roc_points(y: np.ndarray, p: np.ndarray, limit: int = 150) -> list[tuple[float, float]]:
    """(false positive rate, true positive rate) along descending thresholds, thinned to `limit` points."""
    p = as_probabilities(p)
    order = np.argsort(-p)
    ys = y[order]
    tps = np.cumsum(ys)
    fps = np.cumsum(1 - ys)
    pos, neg = max(tps[-1], 1), max(fps[-1], 1) if len(fps) else 1
    idx = np.unique(np.linspace(0, len(ys) - 1, min(limit, len(ys))).astype(int))
    return [(0.0, 0.0)] + [(float(fps[i] / neg), float(tps[i] / pos)) for i in idx]


def calibration_points(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean prediction, observed positive rate, rows) per equal-width probability bin."""
    p = as_probabilities(p)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append((float(p[m].mean()), float(y[m].mean()), int(m.sum())))
    return out


def _svg_xy(
    series: list[tuple[str, str, list[tuple[float, float]]]],
    title: str,
    xlabel: str,
    ylabel: str,
    diagonal: bool = True,
    size: int = 300,
    markers: bool = False,
) -> str:
    pad = 40
    inner = size - pad - 10

    def sx(v: float) -> float:
        return pad + v * inner

    def sy(v: float) -> float:
        return 10 + (1 - v) * inner

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" role="img" '
        f'aria-label="{esc(title)}">',
        f'<rect x="{pad}" y="10" width="{inner}" height="{inner}" fill="#fff" stroke="#d0d7de"/>',
    ]
    for t in (0.25, 0.5, 0.75):
        parts.append(f'<line x1="{sx(t)}" y1="10" x2="{sx(t)}" y2="{10 + inner}" stroke="#eaeef2"/>')
        parts.append(f'<line x1="{pad}" y1="{sy(t)}" x2="{pad + inner}" y2="{sy(t)}" stroke="#eaeef2"/>')
    if diagonal:
        parts.append(
            f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(1)}" y2="{sy(1)}" stroke="#afb8c1" '
            'stroke-dasharray="4 3"/>'
        )
    for name, color, pts in series:
        if not pts:
            continue
        path = " ".join(f"{sx(min(max(x, 0), 1)):.1f},{sy(min(max(y, 0), 1)):.1f}" for x, y in pts)
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}">'
            f"<title>{esc(name)}</title></polyline>"
        )
        if markers:
            parts += [
                f'<circle cx="{sx(min(max(x, 0), 1)):.1f}" cy="{sy(min(max(y, 0), 1)):.1f}" r="3" fill="{color}"/>'
                for x, y in pts
            ]
    for i, (name, color, _) in enumerate(series):
        parts.append(
            f'<rect x="{pad + 8}" y="{18 + 16 * i}" width="10" height="10" fill="{color}"/>'
            f'<text x="{pad + 22}" y="{27 + 16 * i}" font-size="11">{esc(name)}</text>'
        )
    parts.append(
        f'<text x="{pad + inner / 2}" y="{size - 4}" font-size="11" text-anchor="middle">{esc(xlabel)}</text>'
    )
    parts.append(
        f'<text x="12" y="{10 + inner / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {10 + inner / 2})">{esc(ylabel)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _svg_slices(rows: list[dict], tolerance: float, width: int = 520) -> str:
    """Horizontal bars: the change of the primary metric per slice, its interval, and -tolerance."""
    rows = [r for r in rows if r.get("delta") is not None]
    if not rows:
        return '<p class="muted">no slice compared</p>'
    lo = min([-tolerance * 1.5] + [r["low"] if r.get("low") is not None else r["delta"] for r in rows])
    hi = max([tolerance] + [r["high"] if r.get("high") is not None else r["delta"] for r in rows])
    span = (hi - lo) or 1.0
    left, bar_w, row_h = 170, width - 190, 18
    height = 20 + row_h * len(rows)

    def sx(v: float) -> float:
        return left + (v - lo) / span * bar_w

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        'aria-label="per-slice change">',
        f'<line x1="{sx(0):.1f}" y1="0" x2="{sx(0):.1f}" y2="{height}" stroke="#57606a"/>',
        f'<line x1="{sx(-tolerance):.1f}" y1="0" x2="{sx(-tolerance):.1f}" y2="{height}" stroke="#cf222e" '
        f'stroke-dasharray="4 3"><title>-tolerance {tolerance}</title></line>',
    ]
    for i, r in enumerate(rows):
        y = 14 + i * row_h
        color = "#cf222e" if r["status"] == "regression" else "#2da44e"
        x0, x1 = sorted((sx(0), sx(r["delta"])))
        parts.append(
            f'<text x="{left - 6}" y="{y + 4}" font-size="11" text-anchor="end">'
            f"{esc(r['set'])} {esc(r['slice'])}</text>"
        )
        parts.append(
            f'<rect x="{x0:.1f}" y="{y - 5}" width="{max(x1 - x0, 1):.1f}" height="10" fill="{color}" '
            f'opacity="0.75"><title>{esc(r["slice"])}: {_num(r["delta"], signed=True)}</title></rect>'
        )
        if r.get("low") is not None and r.get("high") is not None:
            parts.append(
                f'<line x1="{sx(r["low"]):.1f}" y1="{y}" x2="{sx(r["high"]):.1f}" y2="{y}" '
                'stroke="#24292f" stroke-width="1.5"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def render(result: GateResult, sets: list[EvalSet], meta: dict[str, Any]) -> str:
    """The whole page. `meta` holds versions, hashes, times, importance movers."""
    return "\n".join(
        [
            *_header(result, meta),
            *_checks_table(result),
            *_comparison_table(result),
            *_secondary_table(result),
            *_user_changes(result, meta),
            *_curves(sets, meta),
            SHADOW_START + SHADOW_PLACEHOLDER + SHADOW_END,
            *_versions_table(meta),
            "</body></html>",
        ]
    )


def _header(result: GateResult, meta: dict[str, Any]) -> list[str]:
    passed = result.passed
    verdict = (
        "PROMOTABLE: every blocking check passed" if passed else "BLOCKED: " + ", ".join(result.failed_checks)
    )
    return [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Validation of {esc(meta.get('challenger_version'))}</title><style>{CSS}</style></head><body>",
        f"<h1>Validation report: challenger {esc(meta.get('challenger_version'))} vs champion "
        f"{esc(meta.get('champion_version') or 'none')}</h1>",
        f"<div class='muted'>{esc(meta.get('created_at', ''))} · primary metric <code>{esc(result.primary_metric)}"
        f"</code> · rule <code>{esc(result.rule)}</code> · run {esc(meta.get('run_id', ''))}</div>",
        f"<div class='verdict {'pass' if passed else 'block'}'>{esc(verdict)}</div>",
    ]


def _checks_table(result: GateResult) -> list[str]:
    out = [
        "<h2>Checks</h2><table><tr><th class='l'>check</th><th class='l'>result</th><th class='l'>why</th></tr>"
    ]
    for name, outcome in result.checks.items():
        out.append(
            f"<tr><td class='l'><code>{esc(name)}</code></td><td class='l {'ok' if outcome.passed else 'bad'}'>"
            f"{'pass' if outcome.passed else 'FAIL'}</td><td class='l'>{esc(outcome.summary)}</td></tr>"
        )
    out.append("</table>")
    return out


def _comparison_table(result: GateResult) -> list[str]:
    """The primary metric overall and per slice, with intervals and statuses, then the per-slice bars."""
    out = [
        f"<h2>{esc(result.primary_metric)}: overall and per slice</h2>"
        f"<p class='muted'>{esc(result.slice_confidence_note)}</p>"
        "<table><tr><th class='l'>set</th><th class='l'>slice</th><th>rows</th><th>positives</th>"
        "<th>champion</th><th>challenger</th><th>change</th><th>interval</th><th>one-sided confidence of each bound</th>"
        "<th>tolerance</th><th class='l'>status</th></tr>"
    ]
    for c in result.comparisons:
        status = STATUS_TEXT.get(c.status, c.status)
        cls = (
            "bad"
            if c.status == "regression"
            else ("muted" if c.status in ("insufficient", "underpowered", "not_compared") else "ok")
        )
        interval = (
            f"[{_num(c.low, signed=True)}, {_num(c.high, signed=True)}]" if c.low is not None else "n/a"
        )
        conf = f"{c.confidence:.1%}" if c.confidence else "n/a"
        out.append(
            f"<tr><td class='l'>{esc(c.set)}</td><td class='l'>{esc(c.slice)}</td><td>{c.rows}</td>"
            f"<td>{c.positives}</td><td>{_num(c.champion)}</td><td>{_num(c.challenger)}</td>"
            f"<td>{_num(c.delta, signed=True)}</td><td>{interval}</td><td>{conf}</td>"
            f"<td>-{c.tolerance}</td><td class='l {cls}'>{esc(status)}</td></tr>"
        )
    out.append("</table>")
    slice_rows = [c.__dict__ for c in result.comparisons if c.slice != "overall"]
    tol = slice_rows[0]["tolerance"] if slice_rows else 0.0
    out.append(
        "<h2>Per-slice change (bars), with intervals (lines) and -tolerance (dashed)</h2>"
        + _svg_slices(slice_rows, tol)
    )
    return out


def _secondary_table(result: GateResult) -> list[str]:
    if not result.secondary:
        return []
    out = [
        "<h2>Secondary metrics (paired bootstrap intervals)</h2>"
        f"<p class='muted'>{stats.BOOTSTRAP_NOTE}</p><table><tr><th class='l'>set</th>"
        "<th class='l'>metric</th><th>champion</th><th>challenger</th><th>change (+ = better)</th>"
        "<th>interval</th><th>gated at</th><th class='l'>status</th></tr>"
    ]
    for r in result.secondary:
        gated = f"-{r['tolerance']}" if r["tolerance"] is not None else "reported only"
        out.append(
            f"<tr><td class='l'>{esc(r['set'])}</td><td class='l'>{esc(r['metric'])}</td>"
            f"<td>{_num(r['champion'])}</td><td>{_num(r['challenger'])}</td>"
            f"<td>{_num(r['delta'], signed=True)}</td>"
            f"<td>[{_num(r['low'], signed=True)}, {_num(r['high'], signed=True)}]</td><td>{gated}</td>"
            f"<td class='l {'bad' if r['status'] == 'regression' else ''}'>{esc(r['status'])}</td></tr>"
        )
    out.append("</table>")
    return out


def _user_changes(result: GateResult, meta: dict[str, Any]) -> list[str]:
    """Decision flips at the threshold and the biggest movers among feature importances."""
    out = ["<h2>What changes for users</h2>"]
    if result.flips:
        out.append(
            "<p>Share of rows whose decision flips at the operating threshold: "
            + ", ".join(f"{esc(k)} {v:.2%}" for k, v in result.flips.items())
            + "</p>"
        )
    movers = meta.get("importance_movers") or []
    if movers:
        out.append(
            "<table><tr><th class='l'>feature</th><th>champion gain share</th><th>challenger gain share</th>"
            "<th>change</th></tr>"
        )
        for mv in movers:
            out.append(
                f"<tr><td class='l'>{esc(mv['feature'])}</td><td>{_num(mv['champion'], 3)}</td>"
                f"<td>{_num(mv['challenger'], 3)}</td><td>{_num(mv['change'], 3, signed=True)}</td></tr>"
            )
        out.append("</table>")
    elif not result.flips:
        out.append("<p class='muted'>no champion to compare with</p>")
    return out


def _curves(sets: list[EvalSet], meta: dict[str, Any]) -> list[str]:
    """ROC and calibration curves of both models on every evaluation set."""
    out = ["<h2>Curves</h2><div class='plots'>"]
    models = [(f"challenger {meta.get('challenger_version')}", CHALLENGER_COLOR, "challenger")]
    for s in (x for x in sets if not x.not_compared):
        drawn = (
            [(f"champion {meta.get('champion_version')}", CHAMPION_COLOR, "champion")]
            if s.champion is not None
            else []
        ) + models
        roc = [(name, color, roc_points(s.y, getattr(s, attr))) for name, color, attr in drawn]
        cal = [
            (name, color, [(a, b) for a, b, _ in calibration_points(s.y, getattr(s, attr))])
            for name, color, attr in drawn
        ]
        out.append(
            f"<figure>{_svg_xy(roc, 'ROC ' + s.name, 'false positive rate', 'true positive rate')}"
            f"<figcaption>ROC, {esc(s.name)} ({len(s.y)} rows)</figcaption></figure>"
        )
        out.append(
            f"<figure>{_svg_xy(cal, 'calibration ' + s.name, 'mean prediction', 'observed rate', markers=True)}"
            f"<figcaption>calibration, {esc(s.name)}</figcaption></figure>"
        )
    out.append("</div>")
    return out


VERSION_KEYS = (
    "challenger_version",
    "champion_version",
    "dataset_hash",
    "train_hash",
    "holdout_hash",
    "golden_hash",
    "holdout_compared",
    "golden_compared",
    "features_only_one_model_uses",
    "challenger_data_hash",
    "champion_data_hash",
    "code_version",
    "run_id",
)


def _versions_table(meta: dict[str, Any]) -> list[str]:
    out = ["<h2>Data and versions compared</h2><table>"]
    for key in VERSION_KEYS:
        if key in meta:
            out.append(
                f"<tr><th class='l'>{esc(key)}</th><td class='l'>"
                f"<code>{esc('none' if meta[key] is None else meta[key])}</code></td></tr>"
            )
    out.append("</table>")
    return out
