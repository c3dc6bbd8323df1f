"""The markdown summary of a validation that the Dagster UI shows, with data values escaped."""

from __future__ import annotations

import re
from typing import Any

from ct_assets.core.gate.report import _num
from ct_assets.core.gate.results import GateResult

MD_ESCAPED = "\\`*_[]|~"  # inline markdown (CommonMark and GFM tables) that data could otherwise start


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def md_text(value: Any) -> str:
    """A value as literal markdown text, for a table cell or a line: line breaks become spaces, &, < and >
    become entities (no HTML, no autolinks), and emphasis, code, link, pipe and strike marks are
    backslash-escaped."""
    text = _LINE_BREAK.sub(" ", str(value)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return "".join("\\" + ch if ch in MD_ESCAPED else ch for ch in text)


def markdown_summary(result: GateResult, meta: dict[str, Any]) -> str:
    """A short summary for the asset's metadata in the Dagster UI (values escaped for markdown)."""

    md = md_text

    head = (
        "**Promotable**"
        if result.passed
        else "**Blocked**: " + ", ".join(md(n) for n in result.failed_checks)
    )
    lines = [
        f"{head} — challenger `{md(meta.get('challenger_version'))}` vs champion "
        f"`{md(meta.get('champion_version') or 'none')}`",
        "",
        "| set | champion | challenger | change | lower bound | status |",
        "|---|---|---|---|---|---|",
    ]
    for c in result.comparisons:
        if c.slice == "overall":
            lines.append(
                f"| {md(c.set)} | {_num(c.champion)} | {_num(c.challenger)} | {_num(c.delta, signed=True)} "
                f"| {_num(c.low, signed=True)} | {md(c.status)} |"
            )
    bad = [c for c in result.comparisons if c.status == "regression" and c.slice != "overall"]
    if bad:
        lines += [
            "",
            "Slices not shown non-inferior: " + ", ".join(f"{md(c.set)} {md(c.slice)}" for c in bad),
        ]
    lines += ["", md(result.slice_confidence_note)]
    return "\n".join(lines)
