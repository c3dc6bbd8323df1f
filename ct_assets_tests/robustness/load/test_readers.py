"""Readers beside the pipeline: `ct-assets export` writes Parquet copies of every table and rewrites them
only after a write, refuses on one line without a warehouse; a reader holding the DuckDB file stalls
writers (which give up after their patience, or wait and go through) while export never holds it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from ct_assets.commands.export import export_warehouse
from ct_assets.config import Settings
from ct_assets.core.ingest import landing
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.errors import WarehouseBusy
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.warehouse import holding


def test_export_writes_parquet_copies_of_every_table_and_rewrites_only_after_a_write(
    settings: Settings, project: Path
) -> None:
    from ct_assets.cli.main import main

    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=2, rows=300, seed=21))
    ingest_landed_files(settings)

    assert main(["export", "--json"]) == 0
    folder = settings.paths.warehouse.parent / "export"
    manifest = json.loads((folder / "manifest.json").read_text())
    with connect_reader(settings) as con:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
            ).fetchall()
        ]
        expected = {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in tables}
        rows = con.sql("SELECT * FROM raw_deltas ORDER BY row_id").pl()
    assert manifest["tables"] == expected and expected["raw_deltas"] == 600
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [*(f"{t}.parquet" for t in tables), "manifest.json"]
    )
    copy = pl.read_parquet(folder / "raw_deltas.parquet").sort("row_id")
    assert copy.equals(rows)

    # Nothing changed: nothing rewritten. A write: a new copy.
    before = (folder / "raw_deltas.parquet").stat().st_mtime_ns
    again = export_warehouse(settings)
    assert again["written"] is False and (folder / "raw_deltas.parquet").stat().st_mtime_ns == before
    simulate(settings, SimulationOptions(batches=1, rows=300, seed=21))
    ingest_landed_files(settings)
    after = export_warehouse(settings)
    assert after["written"] is True and after["tables"]["raw_deltas"] == 900
    assert pl.read_parquet(folder / "raw_deltas.parquet").height == 900
    elsewhere = export_warehouse(settings, project / "bi")
    assert elsewhere["written"] is True and (project / "bi" / "ledger.parquet").exists()


def test_export_without_a_warehouse_is_a_one_line_error_and_creates_nothing(
    settings: Settings, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ct_assets.cli.main import main

    assert main(["export"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no warehouse at" in err and "ct-assets init" in err
    assert not (project / "data").exists()


def test_a_reader_holding_the_warehouse_stalls_writers_and_export_does_not_hold_it(
    make_settings: Callable[..., Settings],
) -> None:
    # Writers wait for the DuckDB file at least 5 s (max(lock_timeout_seconds, 5)).
    settings = make_settings(ingest={"lock_timeout_seconds": 1})
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=1, rows=300, seed=31))
    ingest_landed_files(settings)
    simulate(settings, SimulationOptions(batches=1, rows=300, seed=31))

    # A notebook keeping a read-only connection open: the ingest gives up, and the file stays landed.
    with holding(settings, "ro") as holder:
        t = time.monotonic()
        with pytest.raises(WarehouseBusy, match="locked by another process") as busy:
            ingest_landed_files(settings)
        assert time.monotonic() - t >= 4.5
        assert str(holder.pid) in str(busy.value)
        assert len(landing.ready_files(settings.paths.landing)) == 1
        # Read-only beside read-only is fine: an export runs while the notebook holds the file.
        assert export_warehouse(settings)["tables"]["raw_deltas"] == 300

    # Held for less than the writer's patience: the ingest waits and goes through.
    with holding(settings, "ro"):
        result: dict[str, Any] = {}
        writer = threading.Thread(target=lambda: result.update(report=ingest_landed_files(settings)))
        writer.start()
        time.sleep(1.5)
        assert writer.is_alive()  # waiting for the file
    writer.join(timeout=60)
    assert [f.status for f in result["report"].files] == ["ingested"]

    # An export while a writer holds the file waits for it rather than failing.
    with holding(settings, "rw"):
        exported: dict[str, Any] = {}
        exporter = threading.Thread(target=lambda: exported.update(export_warehouse(settings)))
        exporter.start()
        time.sleep(1.0)
        assert exporter.is_alive() and not exported  # still waiting
    exporter.join(timeout=60)
    assert exported["written"] is True and exported["tables"]["raw_deltas"] == 600
