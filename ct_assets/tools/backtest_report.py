"""How a backtest is shown: a progress line on stderr while it runs, a text table, and one
self-contained HTML page (inline CSS and SVG, no network; every value from the data escaped)."""

from __future__ import annotations

import html
import math
import shutil
import time
from collections.abc import Sequence
from typing import Any, TextIO

from ct_assets.tools.backtest import POLICIES, Backtest, StepRecord, StepResult

COLORS = {"served": "#cf222e", "always_promote": "#0969da", "never_retrain": "#6e7781", "every_n": "#1a7f37"}
LABELS = {
    "served": "served (the loop)",
    "always_promote": "always promote",
    "never_retrain": "never retrain",
    "every_n": "every N steps",
}


def _num(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


# -------------------------------------------------------------------------------------------- progress


class Progress:
    """A progress bar on `stream`: one line redrawn with a carriage return on a terminal, else one line
    per step (so logs and CI output stay readable)."""

    def __init__(self, stream: TextIO, total: int, *, tty: bool | None = None):
        self.stream, self.total = stream, total
        self.tty = stream.isatty() if tty is None else tty
        self.started = time.perf_counter()
        self.done = 0

    def _bar(self, done: int, width: int = 24) -> str:
        filled = round(width * done / self.total) if self.total else width
        return "[" + "#" * filled + "-" * (width - filled) + "]"

    def _eta(self) -> str:
        if not self.done:
            return ""
        per_step = (time.perf_counter() - self.started) / self.done
        return f" {per_step:.1f} s/step, {_clock(per_step * (self.total - self.done))} left"

    def _draw(self, text: str) -> None:
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self.stream.write("\r" + text[:width].ljust(width))
        self.stream.flush()

    def starting(self, step: int, name: str) -> None:
        """Say that the cycle of `step` (1-based) starts: only redrawn on a terminal."""
        if self.tty:
            self._draw(f"backtest {self._bar(step - 1)} {step}/{self.total} running{self._eta()}: {name}")

    def finished(self, record: StepRecord) -> None:
        """Say what the cycle of a step decided (the file name last: a narrow terminal cuts it first)."""
        self.done = record.step
        what = record.verdict + (f" {record.challenger}" if record.challenger else "")
        text = (
            f"backtest {self._bar(record.step)} {record.step}/{self.total} {what}, champion "
            f"{record.champion or 'none'} ({record.seconds:.1f} s){self._eta()}: {record.file}"
        )
        if self.tty:
            self._draw(text)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self, message: str = "") -> None:
        if self.tty:
            self.stream.write("\n")
        if message:
            self.stream.write(message + "\n")
        self.stream.flush()


# ----------------------------------------------------------------------------------------------- table

TABLE_COLUMNS = (
    ("step", ">"),
    ("file", "<"),
    ("next rows", ">"),
    ("served version", "<"),
    ("served", ">"),
    ("always_promote", ">"),
    ("never_retrain", ">"),
    ("every_n", ">"),
    ("verdict", "<"),
)


def _row(s: StepResult) -> list[str]:
    r = s.record
    verdict = r.verdict + (f" ({', '.join(r.failed_checks)})" if r.failed_checks else "")
    if not s.scored:
        verdict += f" — not scored: {s.skipped}"
    own = "*" if s.excluded_batches else ""
    return [
        str(r.step),
        r.file,
        str(s.next_rows) if s.scored else "-",
        s.versions["served"] or "-",
        _num(s.metrics["served"]),
        _num(s.metrics["always_promote"]) + own,
        _num(s.metrics["never_retrain"]),
        _num(s.metrics["every_n"]),
        verdict,
    ]


def format_table(bt: Backtest) -> str:
    """The per-step table, then each policy's mean over the scored steps."""
    rows = [_row(s) for s in bt.steps]
    means = bt.means()
    rows.append(["mean", f"{len(bt.scored)} scored steps", "", "", *(_num(means[p]) for p in POLICIES), ""])
    heads = [name for name, _ in TABLE_COLUMNS]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    # The verdict column goes last and is not padded: it may be long.
    widths[-1] = 0

    def line(cells: list[str]) -> str:
        out = []
        for (_, align), w, c in zip(TABLE_COLUMNS, widths, cells, strict=True):
            out.append(c.rjust(w) if align == ">" else c.ljust(w))
        return "  ".join(out).rstrip()

    text = [f"metric: {bt.metric} on the next step's labelled rows; every_n: N = {bt.every}", line(heads)]
    text += [line(r) for r in rows]
    best, best_mean = bt.best_baseline()
    if best is not None and means["served"] is not None and best_mean is not None:
        text.append(
            f"served {_num(means['served'])}; best baseline {best} {_num(best_mean)}; "
            f"served minus best baseline {bt.to_json()['served_minus_best_baseline']:+.4f}"
        )
    if any(s.excluded_batches for s in bt.steps):
        text.append(
            "* the always-promote baseline trained its own model: the loop's data set excluded batches"
        )
    skipped = bt.skipped()
    if skipped:
        text.append(
            f"{len(skipped)} step(s) not scored: "
            + "; ".join(f"{s.record.step}: {s.skipped}" for s in skipped)
        )
    text += [f"note: {n}" for n in bt.notes]
    return "\n".join(text)


# ------------------------------------------------------------------------------------------------ HTML

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;color:#1f2328}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
table{border-collapse:collapse;margin:6px 0;font-size:13px}td,th{border:1px solid #d0d7de;padding:3px 7px;text-align:right}
th{background:#f6f8fa}td.l,th.l{text-align:left}.muted{color:#656d76}.bad{color:#cf222e}
code{background:#f6f8fa;padding:1px 4px;border-radius:4px}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


Curves = dict[str, list[tuple[int, float]]]  # policy -> (step, metric) points
Marker = tuple[int, float, str]  # (step, metric, tooltip): a blocked or failed step on the loop's line


def svg_plot(bt: Backtest, width: int = 900, height: int = 370) -> str:
    """The metric over steps, one line per policy; the loop's blocked steps marked on its line."""
    scored = bt.scored
    curves: Curves = {
        p: [(s.record.step, float(s.metrics[p])) for s in scored if s.metrics[p] is not None]  # type: ignore[arg-type]
        for p in POLICIES
    }
    if not any(curves.values()):
        return '<p class="muted">no step could be scored</p>'
    markers: list[Marker] = [
        (
            s.record.step,
            float(s.metrics["served"]),
            f"step {s.record.step}: {s.record.verdict} "  # type: ignore[arg-type]
            + ", ".join(s.record.failed_checks),
        )
        for s in scored
        if s.record.verdict in ("blocked", "failed") and s.metrics["served"] is not None
    ]
    steps = [s.record.step for s in bt.steps]
    return policy_curves_svg(
        curves,
        ticks=steps[:-1] or steps,
        x_label="step k (model in force after step k, scored on step k+1's labelled rows)",
        aria_label=f"{bt.metric} over steps per policy",
        markers=markers,
        width=width,
        height=height,
    )


def policy_curves_svg(
    curves: Curves,
    *,
    ticks: list[int],
    x_label: str,
    aria_label: str,
    title: str = "",
    markers: Sequence[Marker] = (),
    width: int = 900,
    height: int = 370,
) -> str:
    """One line per policy over steps (the loop's, `served`, drawn last and thick), a grid of five metric
    values, step ticks, `markers` as rings on the loop's line, and the legend in one row underneath."""
    values = [v for c in curves.values() for _, v in c]
    lo, hi = min(values), max(values)
    pad_v = (hi - lo) * 0.08 or 0.01
    lo, hi = lo - pad_v, hi + pad_v
    x0, x1 = min(ticks), max(ticks)
    left, right, top, bottom = 60, 20, 24 if title else 14, 62
    inner_w, inner_h = width - left - right, height - top - bottom

    def sx(step: float) -> float:
        return left + (step - x0) / ((x1 - x0) or 1) * inner_w

    def sy(v: float) -> float:
        return top + (1 - (v - lo) / ((hi - lo) or 1)) * inner_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'font-family="sans-serif" aria-label="{esc(aria_label)}">',
        f'<text x="{left}" y="16" font-size="13" font-weight="bold">{esc(title)}</text>' if title else "",
        f'<rect x="{left}" y="{top}" width="{inner_w}" height="{inner_h}" fill="#fff" stroke="#d0d7de"/>',
    ]
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(
            f'<line x1="{left}" y1="{sy(v):.1f}" x2="{left + inner_w}" y2="{sy(v):.1f}" stroke="#eaeef2"/>'
            f'<text x="{left - 6}" y="{sy(v) + 4:.1f}" font-size="11" text-anchor="end">{v:.3f}</text>'
        )
    stride = max(1, math.ceil(len(ticks) / 24))
    for st in ticks[::stride]:
        parts.append(
            f'<text x="{sx(st):.1f}" y="{top + inner_h + 16}" font-size="11" text-anchor="middle">{st}</text>'
        )
    parts.append(
        f'<text x="{left + inner_w / 2}" y="{top + inner_h + 34}" font-size="12" text-anchor="middle">'
        f"{esc(x_label)}</text>"
    )
    for p in reversed(POLICIES):  # the loop's line drawn last, on top
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in curves.get(p, []))
        w = 3 if p == "served" else 1.6
        dash = "" if p in ("served", "always_promote") else ' stroke-dasharray="5 3"'
        parts.append(
            f'<polyline fill="none" stroke="{COLORS[p]}" stroke-width="{w}"{dash} points="{path}">'
            f"<title>{esc(LABELS[p])}</title></polyline>"
        )
    for step, y, tip in markers:
        parts.append(
            f'<circle cx="{sx(step):.1f}" cy="{sy(y):.1f}" r="4" fill="#fff" stroke="{COLORS["served"]}" '
            f'stroke-width="2"><title>{esc(tip)}</title></circle>'
        )
    for i, p in enumerate(POLICIES):  # the legend, in one row under the plot
        x = left + i * 170
        parts.append(
            f'<rect x="{x}" y="{height - 14}" width="14" height="4" fill="{COLORS[p]}"/>'
            f'<text x="{x + 20}" y="{height - 9}" font-size="11">{esc(LABELS[p])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(bt: Backtest, meta: dict[str, Any]) -> str:
    """The whole page: means, the plot, the per-step table, definitions. `meta` holds the deltas folder,
    the config source, timings."""
    means = bt.means()
    data = bt.to_json()
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Backtest of {esc(meta.get('deltas_dir', ''))}</title><style>{CSS}</style></head><body>",
        f"<h1>Backtest: {esc(meta.get('deltas_dir', ''))}</h1>",
        f"<div class='muted'>{len(bt.steps)} files replayed through the loop (config: "
        f"{esc(meta.get('config', ''))}) in {esc(meta.get('seconds', ''))} s · primary metric "
        f"<code>{esc(bt.metric)}</code> · every_n N = {bt.every} · {len(bt.scored)} steps scored</div>",
        "<h2>Means over the scored steps</h2><table><tr><th class='l'>policy</th><th>mean</th></tr>",
    ]
    out += [f"<tr><td class='l'>{esc(LABELS[p])}</td><td>{_num(means[p])}</td></tr>" for p in POLICIES]
    out.append("</table>")
    if data["best_baseline"] is not None and data["served_minus_best_baseline"] is not None:
        out.append(
            f"<p>Best baseline: {esc(LABELS[data['best_baseline']])}; served minus best baseline "
            f"<b>{data['served_minus_best_baseline']:+.4f}</b> (positive: the loop did better).</p>"
        )
    out += ["<h2>Metric over time</h2>", svg_plot(bt), *_step_table(bt), *_definitions(bt), "</body></html>"]
    return "\n".join(out)


def _step_table(bt: Backtest) -> list[str]:
    heads = ["step", "file", "next rows", "verdict", "challenger", "failed checks"]
    heads += [f"{LABELS[p]}" for p in POLICIES]
    out = [
        "<h2>Step by step</h2><table><tr>" + "".join(f"<th class='l'>{esc(h)}</th>" for h in heads) + "</tr>"
    ]
    for s in bt.steps:
        r = s.record
        cells = [
            f"<td>{r.step}</td>",
            f"<td class='l'>{esc(r.file)}</td>",
            f"<td>{s.next_rows if s.scored else '-'}</td>",
            f"<td class='l{' bad' if r.verdict in ('blocked', 'failed') else ''}'>{esc(r.verdict)}</td>",
            f"<td class='l'>{esc(r.challenger or '-')}</td>",
            f"<td class='l'>{esc(', '.join(r.failed_checks) or r.error or '')}</td>",
        ]
        for p in POLICIES:
            version = s.versions[p] or "-"
            cells.append(f"<td>{_num(s.metrics[p])} <span class='muted'>{esc(version)}</span></td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
        if not s.scored:
            out.append(
                f"<tr><td></td><td class='l muted' colspan='{len(heads) - 1}'>not scored: {esc(s.skipped)}</td></tr>"
            )
    out.append("</table>")
    return out


def _definitions(bt: Backtest) -> list[str]:
    notes = "".join(f"<li>{esc(n)}</li>" for n in bt.notes)
    return [
        "<h2>How to read it</h2><ul>",
        "<li>Step k lands file k and runs one cycle of the loop. Each policy's model in force after step k "
        "is scored on the labelled rows of the batch file k+1 became, with the labels known at the end of "
        "the replay (late ones included).</li>",
        "<li><b>served</b>: the loop's champion. <b>never retrain</b>: the loop's first champion. "
        "<b>always promote</b>: every challenger the loop trained, promoted unconditionally (its own model "
        "on the same window where the loop's data set excluded batches). <b>every N steps</b>: the "
        "always-promote model of steps N, 2N, ..., held in between.</li>",
        "<li>Every policy follows the loop's trigger timing: a model exists only where the loop trained one.</li>",
        notes,
        "</ul>",
    ]
