"""Load: a burst of small files, and (soak) a burst of 1,000 files and one 5,000,000-row file, ingested by
`ct-assets cycle` in a subprocess whose peak RSS is measured, while (soak) the web server's GraphQL latency
is sampled; every file ingested exactly once.

The soak variant runs with `pytest -m soak -s ct_assets_tests/robustness/load`; sizes come from the
CT_ASSETS_* variables in support.py, and figures are printed (`-s` shows them) with the machine's load."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ct_assets.commands.export import export_warehouse
from ct_assets.config import Settings
from ct_assets.core.ingest import landing
from ct_assets.store.warehouse import init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.servers import BIN, webserver
from ct_assets_tests.robustness.load.support import (
    BURST_FILES,
    RSS_LIMIT_KIB,
    SMALL_FILE_ROWS,
    SOAK_BIG_ROWS,
    SOAK_BURST_FILES,
    LatencyProbe,
    machine_load,
    pipeline_env,
    report,
    run_measured,
    warehouse_truth,
    write_pipeline_instance,
)


def ingest_by_cycle(project: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """`ct-assets cycle --json` in a subprocess (through Dagster, on the instance at DAGSTER_HOME)."""
    out = run_measured([str(BIN / "ct-assets"), "cycle", "--json"], project, env, timeout)
    assert out["returncode"] == 0, out["stderr"]
    out["cycle"] = json.loads(out["stdout"].strip().splitlines()[-1])
    return out


def assert_all_ingested_once(settings: Settings, landed: dict[str, int]) -> dict[str, Any]:
    truth = warehouse_truth(settings)
    statuses: dict[str, list[str]] = {}
    for name, status in truth["log"]:
        statuses.setdefault(name, []).append(status)
    assert statuses == {n: ["ingested"] for n in landed}
    assert truth["rows"] == truth["distinct_ids"] == sum(landed.values())
    assert not landing.ready_files(settings.paths.landing)
    return truth


def load_settings_for(make_settings: Callable[..., Settings]) -> Settings:
    # Ingest only: no retraining however many rows land.
    settings = make_settings(**small(retrain={"min_new_rows": 10**12}))
    init_warehouse(settings)
    return settings


@pytest.mark.slow
def test_a_burst_of_small_files_is_ingested_exactly_once(
    make_settings: Callable[..., Settings], project: Path
) -> None:
    settings = load_settings_for(make_settings)
    env = pipeline_env(project, settings, project / "dagster_home")
    paths = simulate(settings, SimulationOptions(batches=BURST_FILES, rows=SMALL_FILE_ROWS, seed=11))
    landed = {p.name: SMALL_FILE_ROWS for p in paths}
    out = ingest_by_cycle(project, env, timeout=1800)
    truth = assert_all_ingested_once(settings, landed)
    report(
        f"burst of {BURST_FILES} small files",
        {
            "files": f"{len(landed)} landed, {out['cycle']['ingested_files']} ingested",
            "rows": f"{sum(landed.values())} landed, {truth['rows']} in raw_deltas",
            "ingest (ct-assets cycle)": f"{out['seconds']:.1f} s, {out['seconds'] / BURST_FILES:.2f} s per file",
            "peak RSS": f"{out['peak_rss_kib'] / 1024:.0f} MiB",
        },
    )
    assert out["cycle"]["ingested_files"] == BURST_FILES
    assert out["cycle"]["quarantined_files"] == out["cycle"]["duplicate_files"] == 0


@pytest.mark.slow
@pytest.mark.soak
def test_load_soak_1000_files_and_5m_rows_with_the_web_server_answering(
    make_settings: Callable[..., Settings], project: Path
) -> None:
    settings = load_settings_for(make_settings)
    home = project / "dagster_home"
    write_pipeline_instance(home)
    env = pipeline_env(project, settings, home)
    figures: dict[str, Any] = {}
    with webserver(project, env) as port:
        with LatencyProbe(port) as idle:
            time.sleep(15)
        figures["GraphQL, idle"] = idle.figures()

        # A burst of small files.
        t = time.perf_counter()
        paths = simulate(settings, SimulationOptions(batches=SOAK_BURST_FILES, rows=SMALL_FILE_ROWS, seed=12))
        landed = {p.name: SMALL_FILE_ROWS for p in paths}
        figures["burst landed"] = f"{len(landed)} files in {time.perf_counter() - t:.0f} s"
        with LatencyProbe(port) as during_burst:
            burst = ingest_by_cycle(project, env, timeout=7200)
        assert_all_ingested_once(settings, landed)
        figures["burst ingest"] = (
            f"{burst['cycle']['ingested_files']} files in {burst['seconds']:.0f} s "
            f"({burst['seconds'] / len(landed):.2f} s per file), peak RSS {burst['peak_rss_kib'] / 1024:.0f} MiB"
        )
        figures["GraphQL during the burst"] = during_burst.figures()
        figures["load after the burst"] = machine_load()

        # One big file.
        t = time.perf_counter()
        (big,) = simulate(settings, SimulationOptions(batches=1, rows=SOAK_BIG_ROWS, seed=13))
        landed[big.name] = SOAK_BIG_ROWS
        figures["big file landed"] = (
            f"{SOAK_BIG_ROWS} rows, {big.stat().st_size / 2**20:.0f} MiB Parquet, in {time.perf_counter() - t:.0f} s"
        )
        with LatencyProbe(port) as during_big:
            big_out = ingest_by_cycle(project, env, timeout=7200)
        truth = assert_all_ingested_once(settings, landed)
        figures["big file ingest"] = (
            f"{big_out['seconds']:.0f} s, peak RSS {big_out['peak_rss_kib'] / 2**20:.2f} GiB"
            + (" (over 3 GiB: unbounded)" if big_out["peak_rss_kib"] > RSS_LIMIT_KIB else "")
        )
        figures["GraphQL during the big ingest"] = during_big.figures()
        figures["rows"] = f"{sum(landed.values())} landed, {truth['rows']} in raw_deltas"
        exported = export_warehouse(settings)
        figures["export afterwards"] = (
            f"{exported['seconds']:.1f} s, warehouse held read-only {exported['warehouse_held_seconds']:.1f} s"
        )
    report("load soak", figures)
    assert big_out["cycle"]["ingested_files"] == 1
    assert during_burst.seconds and during_big.seconds, (during_burst.errors[:3], during_big.errors[:3])
    assert exported["tables"]["raw_deltas"] == truth["rows"]
