"""Values from the data are text, never markup, in the HTML report and the markdown summary (Hypothesis
draws odd and hostile set, slice and value names), and hostile values keep the markdown table's shape."""

import dataclasses
import functools
import os
import re
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ct_assets.config import load_settings
from ct_assets.core import gate
from ct_assets.core.gate import report, summary
from ct_assets_tests.helpers.html import parse

ODD_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("<>&\"'|\\`*_[]()#!~-+=.:;/ \n\r\t")),
        st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    ),
    min_size=1,
    max_size=24,
)


HOSTILE = [
    "<script>alert(1)</script>",
    "a|b",
    "a\\|b",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "[x](javascript:alert(1))",
    "&lt;b&gt;",
    "**bold** _it_ `code`",
    "x\n# heading\n| a | b |",
]


def squash(text: str) -> str:
    return " ".join(text.split())


def gate_result(
    set_names: tuple[str, str], slice_column: str, values: tuple[str, str]
) -> tuple[gate.GateResult, list[gate.EvalSet]]:
    """The real gate on two small sets where the challenger is worse in the first slice value."""
    rng = np.random.default_rng(0)
    n = 240
    y = (rng.random(n) < 0.5).astype(np.int8)
    champion = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.1, n), 0.01, 0.99)
    group = np.array([values[i % 2] for i in range(n)], dtype=object)
    challenger = np.where(group == values[0], rng.random(n), champion)
    with_small_slices = dataclasses.replace(
        _SETTINGS, gate=dataclasses.replace(_SETTINGS.gate, min_slice_rows=20)
    )
    sets = [
        gate.EvalSet(name, y, {slice_column: group.copy()}, challenger.copy(), champion.copy())
        for name in set_names
    ]
    return gate.evaluate(with_small_slices, sets), sets


_SETTINGS = load_settings(os.devnull, cwd=Path("/"))  # an empty file: the defaults (their gate is used)


def render_both(
    set_names: tuple[str, str], column: str, values: tuple[str, str]
) -> tuple[str, str, gate.GateResult]:
    result, sets = gate_result(set_names, column, values)
    meta = {"challenger_version": "v0002", "champion_version": "v0001", "run_id": "r", "created_at": "t"}
    meta["importance_movers"] = [{"feature": column, "champion": 0.5, "challenger": 0.25, "change": -0.25}]
    return report.render(result, sets, meta), summary.markdown_summary(result, meta), result


def markdown_to_html(text: str) -> str:
    from markdown_it import MarkdownIt

    # Raw HTML allowed: the worst renderer a summary could meet.
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


PLAIN: tuple[tuple[str, str], str, tuple[str, str]] = (("golden", "holdout"), "region", ("north", "south"))


@functools.cache
def plain_rendering() -> tuple[str, str, gate.GateResult]:
    return render_both(*PLAIN)


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    set_names=st.lists(ODD_TEXT, min_size=2, max_size=2, unique=True).map(tuple) | st.just(PLAIN[0]),
    column=ODD_TEXT | st.sampled_from(HOSTILE),
    values=st.lists(ODD_TEXT | st.sampled_from(HOSTILE), min_size=2, max_size=2, unique=True).map(tuple),
)
def test_values_from_the_data_are_text_in_the_html_report_and_the_markdown_summary(
    set_names: tuple[str, str], column: str, values: tuple[str, str]
) -> None:
    plain_html, plain_md, plain = plain_rendering()
    odd_html, odd_md, odd = render_both(set_names, column, values)
    assert sorted(c.status for c in odd.comparisons) == sorted(c.status for c in plain.comparisons)
    regressed = [c.slice for c in odd.comparisons if c.status == "regression" and c.slice != "overall"]
    assert regressed == [f"{column}={values[0]}"] * 2  # the first value, in both sets

    # HTML: the same elements as with plain values, no event handler, every value shown as text.
    page, plain_page = parse(odd_html), parse(plain_html)
    assert page.tag_names == plain_page.tag_names
    assert not any(name.lower().startswith("on") for _, attrs in page.tags for name in attrs)
    for value in [*set_names, column, *values]:
        assert squash(value) in page.words, value

    # Markdown (rendered as CommonMark with GFM tables, raw HTML on): the same elements as with plain
    # values (the table keeps its six cells a row), every value it names (the sets in the table, the
    # regressed slice in a line) shown as text.
    md_page, plain_md_page = parse(markdown_to_html(odd_md)), parse(markdown_to_html(plain_md))
    assert md_page.tag_names == plain_md_page.tag_names
    assert md_page.tag_names.count("td") == 6 * (md_page.tag_names.count("tr") - 1)  # the header row has th
    for value in [*set_names, column, values[0]]:
        assert squash(value) in md_page.words, value


def test_hostile_values_in_the_markdown_table_keep_its_shape() -> None:
    odd_html, odd_md, _ = render_both(("a|b", "c\\|d"), "<script>x</script>", ("p|q", "**r**"))
    rows = [line for line in odd_md.splitlines() if line.startswith("| ")]
    assert len(rows) == 3  # header and the two overall rows
    cells = [re.split(r"(?<!\\)\|", row.strip())[1:-1] for row in rows]
    assert all(len(c) == 6 for c in cells), cells
    assert "<script>" not in odd_md and "<script>" not in odd_html
    assert "&lt;script&gt;x&lt;/script&gt;" in odd_html
