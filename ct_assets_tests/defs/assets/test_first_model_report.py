"""The first model's validation (no champion yet): the HTML report, the markdown summary and the check
results tell one story, and the check tables in the UI show rounded figures."""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pytest

from ct_assets.config import Settings
from ct_assets.store.warehouse import init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.runs import check_evaluations, metadata, records, run

NO_CHAMPION_NOTE = "no champion yet: no slice compared, so no per-slice confidence was chosen"
# Sentences that would claim a comparison, or blame too few rows, when there was simply no champion.
CONTRADICTIONS = ("slice comparisons within", "no slice with enough rows", "slice(s) not shown")


@dataclass
class FirstReport:
    html: str
    report: dict[str, Any]  # the JSON written beside the HTML
    summary_md: str  # the validation_report materialization's markdown summary
    checks: dict[str, Any]  # the run's check evaluations on validation_report, by name


@pytest.fixture
def first_report(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> Iterator[FirstReport]:
    settings = make_settings(**small())
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=3, rows=3000, seed=1))
    assert run(instance, "ingest_job").success
    ct = run(instance, "ct_job")
    assert ct.success
    reports = settings.paths.reports
    yield FirstReport(
        (reports / "v0001.html").read_text(encoding="utf-8"),
        json.loads((reports / "v0001.json").read_text(encoding="utf-8")),
        str(metadata(ct, "validation_report")["summary"]),
        check_evaluations(ct, "validation_report"),
    )


def test_first_report_does_not_contradict_itself(first_report: FirstReport) -> None:
    slice_check = first_report.checks["challenger_no_slice_regression"]
    measured = [r for r in records(slice_check.metadata["details"].value) if r["status"] == "no_champion"]
    assert measured
    assert slice_check.description.startswith(
        f"no champion yet: {len(measured)} slices measured, none compared"
    )
    texts = {"html": first_report.html, "markdown": first_report.summary_md}
    texts.update({name: e.description for name, e in first_report.checks.items()})
    texts.update({f"{name} summary": e.metadata["summary"].value for name, e in first_report.checks.items()})
    for where, text in texts.items():
        for claim in CONTRADICTIONS:
            assert claim not in text, (where, claim, text)
    assert f"<p class='muted'>{NO_CHAMPION_NOTE}</p>" in first_report.html
    assert first_report.summary_md.endswith(NO_CHAMPION_NOTE)
    assert first_report.report["slice_confidence_note"] == NO_CHAMPION_NOTE
    versions = first_report.html[first_report.html.index("Data and versions compared") :]
    assert "<th class='l'>champion_version</th><td class='l'><code>none</code>" in versions
    assert "None" not in versions  # "vs champion none" above, not Python's None here


def test_check_tables_show_four_significant_digits_and_the_json_keeps_all(first_report: FirstReport) -> None:
    shown = [
        (name, key, value)
        for name, e in first_report.checks.items()
        for row in records(e.metadata["details"].value)
        for key, value in row.items()
        if isinstance(value, float)
    ]
    assert {key for _, key, _ in shown} >= {"challenger", "roc_auc", "min", "max"}, shown
    assert all(value == float(f"{value:.4g}") for _, _, value in shown), shown
    stored = [c["challenger"] for c in first_report.report["comparisons"] if c["challenger"] is not None]
    assert any(value != float(f"{value:.4g}") for value in stored)  # the JSON report is not rounded
