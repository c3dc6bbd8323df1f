"""The shadow evaluation's section of a validation report: a challenger awaiting promotion or review,
compared with the champion on the live rows both scored, written into its report after the fact.

The report keeps the section between two markers (core.gate.report.SHADOW_START / SHADOW_END); every
ingest run that shadow-scores the challenger replaces what is between them (a report written before
the markers existed gets the section before its end). The same figures go into the report's JSON under
`shadow`. Values from the data are escaped.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ct_assets.config import Settings
from ct_assets.core.gate.evaluation import report_path, write_atomic
from ct_assets.core.gate.report import SHADOW_END, SHADOW_START, esc

END_OF_PAGE = "</body></html>"


def _num(x: Any, digits: int = 4, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def render(ev: dict[str, Any]) -> str:
    """The section: shift and flips on every paired row; both models' metric on the labelled ones."""
    champions = ", ".join(ev.get("champion_versions") or []) or "none"
    rows = [
        ("rows scored by both", f"{ev['rows']:,}"),
        ("mean score shift (challenger - champion)", _num(ev["mean_score_shift"], signed=True)),
        ("mean absolute score shift", _num(ev["mean_abs_score_shift"])),
        (
            f"decisions flipped at {_num(ev['threshold'], 2)}",
            f"{ev['decision_flips']:.2%} ({ev['flips_to_positive']:,} to positive, "
            f"{ev['flips_to_negative']:,} to negative)",
        ),
        ("rows labelled so far", f"{ev.get('rows_labelled', 0):,} ({ev.get('positives', 0):,} positive)"),
    ]
    metric = ev["metric"]
    if "delta" in ev:
        interval = (
            f"[{_num(ev['low'], signed=True)}, {_num(ev['high'], signed=True)}] at {ev['confidence']:.0%} "
            "one-sided per bound"
            if ev.get("low") is not None
            else "n/a"
        )
        rows += [
            (f"champion {metric}", _num(ev["champion_metric"])),
            (f"challenger {metric}", _num(ev["challenger_metric"])),
            ("change (+ = better)", f"{_num(ev['delta'], signed=True)}, interval {interval}"),
            (f"within -{ev['tolerance']} ([gate] tolerance; informative)", esc(ev["status"])),
        ]
    else:
        rows.append((metric, esc(ev.get("note", "no labels yet"))))
    body = "".join(f"<tr><th class='l'>{esc(k)}</th><td class='l'>{v}</td></tr>" for k, v in rows)
    return (
        "<h2>Shadow evaluation on live rows</h2>"
        f"<p class='muted'>Challenger {esc(ev['challenger_version'])} scored the rows that landed after its "
        f"training beside the champion ({esc(champions)}) that served them; labels as known at "
        f"{esc(ev['evaluated_at'])}. The gate is not run again on these rows.</p>"
        f"<table>{body}</table>"
    )


def splice(page: str, ev: dict[str, Any]) -> str:
    """The report page with its shadow section replaced by this evaluation."""
    section = SHADOW_START + render(ev) + SHADOW_END
    start, end = page.find(SHADOW_START), page.find(SHADOW_END)
    if start >= 0 and end > start:
        return page[:start] + section + page[end + len(SHADOW_END) :]
    at = page.rfind(END_OF_PAGE)
    return page[:at] + section + page[at:] if at >= 0 else page + section


def attach(s: Settings, version: str, ev: dict[str, Any]) -> str | None:
    """Write the evaluation into the challenger's report (HTML section and JSON `shadow`); returns the
    report's path, or None when the challenger has no report."""
    html_path = report_path(s, version)
    if not html_path.is_file():
        return None
    write_atomic(html_path, splice(html_path.read_text(encoding="utf-8"), ev))
    json_path = html_path.with_suffix(".json")
    if json_path.is_file():
        try:
            body = json.loads(json_path.read_text(encoding="utf-8"))
        except ValueError:
            body = {}
        write_atomic(json_path, json.dumps({**body, "shadow": ev}, indent=2, default=str))
    return str(html_path)
