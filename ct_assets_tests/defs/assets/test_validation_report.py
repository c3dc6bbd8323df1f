"""The validation report: one self-contained HTML file (plus its JSON), values from the data escaped,
`ct-assets report`, and a render in headless Chromium with no network."""

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ct_assets.config import Settings, load_settings
from ct_assets.core.gate.report import CHALLENGER_COLOR, CHAMPION_COLOR
from ct_assets.store.warehouse import init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.cli import cli as ct_assets_cli
from ct_assets_tests.helpers.config import default_tables, small, write_config
from ct_assets_tests.helpers.html import chromium, decode_png, parse, pixels_near
from ct_assets_tests.helpers.runs import run

XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


@dataclass
class Project:
    root: Path
    config: Path
    settings: Settings
    champion: str
    challenger: str
    summary_md: str  # the validation_report materialization's markdown summary

    def html(self, version: str) -> str:
        return (self.settings.paths.reports / f"{version}.html").read_text(encoding="utf-8")

    def report(self, version: str) -> dict[str, Any]:
        return json.loads((self.settings.paths.reports / f"{version}.json").read_text(encoding="utf-8"))


def land_with_script_region(settings: Settings, seed: int, **options: Any) -> None:
    """Simulated batches in which the region 'west' is called `<script>alert(1)</script>`."""
    for path in simulate(settings, SimulationOptions(batches=3, rows=3000, seed=seed, **options)):
        frame = pl.read_parquet(path).with_columns(pl.col("region").replace("west", XSS))
        part = path.with_name(f".{path.name}.part")
        frame.write_parquet(part)
        os.replace(part, path)


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A champion, then a challenger blocked because the concept flipped in the script-named region:
    the region's name is in the slice tables, the bars, the check summaries and the markdown summary."""
    root = tmp_path_factory.mktemp("report_project")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    features = default_tables()["features"]
    features["region"]["categories"] = ["north", "south", "east", XSS]
    # A frozen golden set held to the holdout's tolerance (the gate before issue 12): the drift confined to
    # region=west is then blocked as forgetting, which gives a blocked report to look at.
    tables = small(dataset={"golden_fraction": 0.2, "golden_refresh": 0.0}, gate={"golden_tolerance": 0.01})
    tables["features"] = features
    config = write_config(root / "ct.toml", tables)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("DAGSTER_HOME", str(home))
        mp.setenv("CT_ASSETS_CONFIG", str(config))
        settings = load_settings(config)
        assert XSS in (settings.feature("region").categories or ())
        init_warehouse(settings)
        with dg.instance_for_test(temp_dir=str(home)) as instance:
            land_with_script_region(settings, seed=1)
            assert run(instance, "ingest_job").success
            assert run(instance, "ct_job").success
            land_with_script_region(settings, seed=2, drift_slice="region=west")
            assert run(instance, "ingest_job").success
            blocked = run(instance, "ct_job")
            assert not blocked.success
            (mat,) = blocked.asset_materializations_for_node("validation_report")
            summary = mat.metadata["summary"].value
        yield Project(root, config, settings, "v0001", "v0002", str(summary))


# ------------------------------------------------------------------------------------- the HTML file


def test_report_is_self_contained(reported: Project) -> None:
    for version in (reported.champion, reported.challenger):
        html = reported.html(version)
        page = parse(html)
        names = {tag for tag, _ in page.tags}
        assert "script" not in names
        assert not names & {"link", "iframe", "object", "embed", "img", "base"}  # nothing fetched
        for tag, attrs in page.tags:
            for key, value in attrs.items():
                if key in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"):
                    assert value is not None
                    assert not value.strip().lower().startswith(("http:", "https:", "//")), (tag, key, value)
        assert "<script" not in html.lower()
        assert "@import" not in html and "url(" not in html
        assert "<style>" in html  # the CSS is inline


def test_report_puts_the_verdict_first_then_checks_metrics_slices_curves_and_hashes(
    reported: Project,
) -> None:
    html = reported.html(reported.challenger)
    report = reported.report(reported.challenger)
    page = parse(html)

    # The verdict comes before every section.
    verdict = html.index("<div class='verdict block'>")
    assert verdict < html.index("<h2>")
    verdict_text = html[verdict : html.index("</div>", verdict)]
    assert verdict_text.startswith("<div class='verdict block'>BLOCKED: ")
    assert all(name in verdict_text for name in report["failed_checks"])
    assert report["failed_checks"]

    # The metric table: one row per comparison, with its interval where one was computed.
    for c in report["comparisons"]:
        label = f"<td class='l'>{c['set']}</td><td class='l'>{c['slice'].replace('<', '&lt;').replace('>', '&gt;')}</td>"
        assert label in html, label
        if c["low"] is not None:
            row = html.split(label, 1)[1].split("</tr>", 1)[0]
            assert f"<td>[{c['low']:+.4f}, {c['high']:+.4f}]</td>" in row, row
    golden = next(c for c in report["comparisons"] if (c["set"], c["slice"]) == ("golden", "overall"))
    assert golden["low"] is not None and golden["low"] < golden["delta"] < golden["high"]

    # Slice bars: one bar (a rect with a title) per compared slice.
    (bars,) = [s for s in page.svgs if s["label"] == "per-slice change"]
    compared = [c for c in report["comparisons"] if c["slice"] != "overall" and c["delta"] is not None]
    assert len(compared) >= 8
    assert bars["tags"].count("rect") == len(compared)
    assert any(t.startswith(f"region={XSS}:") for t in bars["titles"])  # the parser unescapes: it was text

    # ROC and calibration curves for both models, on both sets.
    for set_name in ("golden", "holdout"):
        for kind in ("ROC", "calibration"):
            (svg,) = [s for s in page.svgs if s["label"] == f"{kind} {set_name}"]
            assert svg["tags"].count("polyline") == 2, (kind, set_name)
            assert svg["titles"] == [f"champion {reported.champion}", f"challenger {reported.challenger}"]
    assert f'stroke="{CHAMPION_COLOR}"' in html and f'stroke="{CHALLENGER_COLOR}"' in html

    # The data hashes and versions compared.
    for key in ("dataset_hash", "train_hash", "holdout_hash", "golden_hash", "challenger_data_hash"):
        assert report[key], key
        assert f"<th class='l'>{key}</th><td class='l'><code>{report[key]}</code></td>" in html, key
    assert report["champion_data_hash"] and report["champion_data_hash"] in html
    assert report["challenger_version"] == reported.challenger
    assert report["champion_version"] == reported.champion


def test_first_report_has_no_champion_to_compare(reported: Project) -> None:
    html = reported.html(reported.champion)
    page = parse(html)
    assert "<div class='verdict pass'>PROMOTABLE" in html
    assert "vs champion none" in html
    (roc,) = [s for s in page.svgs if s["label"] == "ROC golden"]
    assert roc["titles"] == [f"challenger {reported.champion}"]


def test_values_from_the_data_are_escaped_in_the_html(reported: Project) -> None:
    report = reported.report(reported.challenger)
    assert any(XSS in c["slice"] for c in report["comparisons"])  # the raw value is in the data
    html = reported.html(reported.challenger)
    assert XSS not in html
    assert html.count(XSS_ESCAPED) >= 4  # table rows, bars, check summary
    page = parse(html)
    assert "script" not in {tag for tag, _ in page.tags}
    assert f"golden region={XSS}" in "".join(page.text)  # shown as text


def test_values_from_the_data_are_escaped_in_the_markdown_summary(reported: Project) -> None:
    md = reported.summary_md
    assert md.startswith("**Blocked**")
    assert f"golden region={XSS_ESCAPED}" in md  # the drifted slice is named...
    assert XSS not in md  # ...escaped
    assert "<" not in md.replace("&lt;", "")


# ----------------------------------------------------------------------------------- ct-assets report


def cli(reported: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return ct_assets_cli(
        reported.root, *args, config=reported.config, home=reported.root / "dagster_home", timeout=120
    )


def test_report_command_prints_the_path(reported: Project) -> None:
    latest = cli(reported, "report")
    assert latest.returncode == 0, latest.stderr
    assert latest.stdout.strip() == str(reported.settings.paths.reports / f"{reported.challenger}.html")
    first = cli(reported, "report", reported.champion)
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.strip())
    assert path == reported.settings.paths.reports / f"{reported.champion}.html"
    assert path.is_file()


@pytest.mark.parametrize("version", ["v9999", "../../etc/passwd", "latest"])
def test_report_command_refuses_what_has_no_report_on_one_line(reported: Project, version: str) -> None:
    proc = cli(reported, "report", version)
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ct-assets: error: ")
    assert "Traceback" not in proc.stderr
    if version == "v9999":
        assert "v9999" in lines[0]


# ----------------------------------------------------------------------------------- headless Chromium


def test_report_renders_in_headless_chromium_without_network(reported: Project, tmp_path: Path) -> None:
    path = reported.settings.paths.reports / f"{reported.challenger}.html"
    report = reported.report(reported.challenger)

    dom = chromium(tmp_path, "--dump-dom", path.as_uri()).stdout.decode("utf-8", "replace")
    dom = dom[dom.index("<!DOCTYPE html>") :] if "<!DOCTYPE html>" in dom else dom[dom.index("<html") :]
    page = parse(dom)
    labels = [s["label"] for s in page.svgs]
    assert labels == [
        "per-slice change",
        "ROC golden",
        "calibration golden",
        "ROC holdout",
        "calibration holdout",
    ]
    assert all(s["tags"].count("polyline") == 2 for s in page.svgs[1:])
    assert "script" not in {tag for tag, _ in page.tags}  # the escaped value stayed text in the DOM
    assert f"golden region={XSS}" in "".join(page.text)
    assert "BLOCKED: " + ", ".join(report["failed_checks"]) in "".join(page.text)

    shot = tmp_path / "report.png"
    chromium(tmp_path, "--hide-scrollbars", "--window-size=1200,3600", f"--screenshot={shot}", path.as_uri())
    img = decode_png(shot.read_bytes())
    assert img.shape == (3600, 1200, 3)
    white = pixels_near(img, "#ffffff", 0) / (img.shape[0] * img.shape[1])
    assert 0.5 < white < 0.98, white  # not blank, and not an error page either
    # Both models' curves and legends are drawn (four plots, 2 px lines, 10 x 10 legend squares).
    assert pixels_near(img, CHALLENGER_COLOR) > 400
    assert pixels_near(img, CHAMPION_COLOR) > 400
    assert pixels_near(img, "#ffebe9", 2) > 5000  # the red verdict box of a blocked challenger
