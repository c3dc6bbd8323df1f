"""`ct-assets export`: Parquet copies of the warehouse tables, for notebooks and BI tools.

DuckDB lets one process write a file, and a process that holds it open, even read-only, keeps every
writer out. A notebook or a BI tool that keeps a connection open would therefore stall ingest and
training. This command opens the warehouse read-only for as long as a `COPY ... TO parquet` of each
table takes (one connection, so all tables show the same moment), closes it, and only then puts the
files in place (temp file + rename: a reader never sees half a file). Readers then query the Parquet
files and never touch the warehouse. Nothing is rewritten when the warehouse has not changed since
the last export; `--every N` keeps the copies current. See docs/reading_the_warehouse.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ct_assets.config import Settings
from ct_assets.core.triggers.snapshot import warehouse_stamp
from ct_assets.store.sql import quote
from ct_assets.store.warehouse import connect_reader

MANIFEST = "manifest.json"
READ_WAIT_SECONDS = 60.0  # how long to wait for a writer to let go of the warehouse


def default_folder(settings: Settings) -> Path:
    """`export/` beside the warehouse file (data/export with the defaults)."""
    return settings.paths.warehouse.parent / "export"


def _manifest(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def export_warehouse(
    settings: Settings,
    folder: Path | None = None,
    *,
    force: bool = False,
    wait_seconds: float = READ_WAIT_SECONDS,
) -> dict[str, Any]:
    """Write `<folder>/<table>.parquet` for every table of the warehouse, and `manifest.json`.

    Returns the manifest, with `written` False when the warehouse had not changed since the last
    export to this folder (nothing was rewritten then)."""
    folder = (folder or default_folder(settings)).absolute()
    warehouse = settings.paths.warehouse
    stamp = warehouse_stamp(warehouse)
    previous = _manifest(folder)
    if not force and previous.get("warehouse") == str(warehouse) and previous.get("stamp") == stamp:
        return {**previous, "written": False}
    started = time.monotonic()
    staged: list[tuple[Path, Path]] = []
    counts: dict[str, int] = {}
    try:
        with connect_reader(settings, wait_seconds=wait_seconds) as con:
            opened = time.monotonic()
            present = [
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY table_name"
                ).fetchall()
            ]
            # The stamp taken now is the state these files show: no writer can change the file while
            # this read-only connection is open.
            stamp = warehouse_stamp(warehouse)
            folder.mkdir(parents=True, exist_ok=True)
            for table in present:
                final = folder / f"{table}.parquet"
                tmp = folder / f".{table}.parquet.{os.getpid()}.tmp"
                staged.append((tmp, final))
                sql_path = str(tmp).replace("'", "''")
                rows = con.execute(
                    f"COPY (SELECT * FROM {quote(table)}) TO '{sql_path}' (FORMAT parquet)"
                ).fetchall()
                counts[table] = int(rows[0][0]) if rows else 0
            held = time.monotonic() - opened
        for tmp, final in staged:
            os.replace(tmp, final)
    finally:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    manifest = {
        "warehouse": str(warehouse),
        "folder": str(folder),
        "exported_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        "stamp": stamp,
        "tables": counts,
        "seconds": round(time.monotonic() - started, 3),
        "warehouse_held_seconds": round(held, 3),
    }
    tmp_manifest = folder / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp_manifest.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp_manifest, folder / MANIFEST)
    return {**manifest, "written": True}


def describe(out: dict[str, Any]) -> str:
    """One line for people."""
    if not out["written"]:
        return f"unchanged since the export of {out['exported_at']}; nothing rewritten in {out['folder']}"
    tables = ", ".join(f"{t} {n}" for t, n in out["tables"].items())
    return (
        f"exported {len(out['tables'])} tables to {out['folder']} in {out['seconds']:.2f} s "
        f"(warehouse held read-only {out['warehouse_held_seconds']:.2f} s); rows: {tables}"
    )


def run_export(
    settings: Settings,
    folder: Path | None,
    *,
    force: bool,
    every: float,
    as_json: bool,
) -> int:
    """The command: export once, or every `every` seconds until interrupted."""
    while True:
        out = export_warehouse(settings, folder, force=force)
        if as_json:
            print(json.dumps(out), flush=True)
        elif out["written"] or every <= 0:
            print(describe(out), flush=True)
        if every <= 0:
            return 0
        force = False
        time.sleep(every)
