"""The snapshot of the trigger inputs that the retrain sensor reads instead of opening DuckDB.

Opening a DuckDB file costs ~30 ms whatever its size, more than the rest of a sensor tick. Every
writer that changes the inputs (ingest, training, monitoring, registry changes, the golden set)
therefore leaves them in state/trigger_inputs.json, explicitly, through `writer_keeping_snapshot`:
stamped with the warehouse file's and its WAL's (mtime, size) as they were when the writer closed,
still under the writer lock. The sensor trusts the snapshot only while the files still carry that
stamp: any later write, by us or by anything else, changes the stamp and sends the sensor back to
DuckDB (which rewrites the snapshot). A stale snapshot is therefore never used, only a slower path
taken.

Cluster mode: the stamp is the DuckLake catalog's newest snapshot id (one indexed PostgreSQL query),
which every commit on any host moves on; the file stays in this host's own state folder, a cache.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import duckdb

from ct_assets.config.settings import Settings
from ct_assets.core.triggers.decision import TriggerInputs, read_trigger_inputs
from ct_assets.store import lake
from ct_assets.store.warehouse import connect_reader, connect_writer

SNAPSHOT_NAME = "trigger_inputs.json"


SNAPSHOT_FORMAT = 2  # 2: no golden_missing (every CT run refreshes the golden set)


def snapshot_path(settings: Settings) -> Path:
    return settings.paths.state / SNAPSHOT_NAME


def stamp(settings: Settings) -> list:
    """What changes whenever the warehouse does: its files' stamps, or the lake's newest snapshot id."""
    if settings.cluster is not None:
        return [lake.snapshot_id(settings.cluster)]
    return warehouse_stamp(settings.paths.warehouse)


def warehouse_stamp(warehouse: Path) -> list:
    """(mtime_ns, size) of the warehouse file and of its write-ahead log (None when absent)."""
    out: list = []
    for p in (warehouse, warehouse.with_name(warehouse.name + ".wal")):
        try:
            st = p.stat()
            out.append([st.st_mtime_ns, st.st_size])
        except FileNotFoundError:
            out.append(None)
    return out


def write_snapshot(settings: Settings, inputs: TriggerInputs, stamp: list) -> None:
    """Atomically (temp file + rename) leave the inputs beside the state, under this stamp."""
    path = snapshot_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "format": SNAPSHOT_FORMAT,
        "warehouse": str(settings.paths.warehouse),
        "stamp": stamp,
        "inputs": inputs.to_json(),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)


def snapshot_inputs(settings: Settings) -> TriggerInputs | None:
    """The snapshot's inputs if it still matches the warehouse files exactly, else None."""
    try:
        body = json.loads(snapshot_path(settings).read_text())
        if (
            body.get("format") != SNAPSHOT_FORMAT
            or body.get("warehouse") != str(settings.paths.warehouse)
            or body.get("stamp") != stamp(settings)
        ):
            return None
        return TriggerInputs.from_json(body["inputs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_trigger_inputs(settings: Settings) -> tuple[TriggerInputs, str]:
    """The trigger inputs and where they came from ("snapshot" or "warehouse").

    Falls back to a read-only DuckDB connection (WarehouseBusy while a writer holds it), and leaves a
    fresh snapshot when no write happened while it read.
    """
    inputs = snapshot_inputs(settings)
    if inputs is not None:
        return inputs, "snapshot"
    before = stamp(settings)
    with connect_reader(settings) as con:
        inputs = read_trigger_inputs(con)
    if stamp(settings) == before:
        with contextlib.suppress(OSError):
            write_snapshot(settings, inputs, before)
    return inputs, "warehouse"


@contextlib.contextmanager
def writer_keeping_snapshot(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """A writer connection (store.warehouse.connect_writer) for a write that changes the trigger inputs
    (ingest log, models, champion scores, ledger, golden set): when the block ends normally, the inputs
    are read on the open connection and, once it is closed and still under the writer lock, left as
    the snapshot stamped with the files as they are then."""
    inputs: list[TriggerInputs] = []

    def read(con: duckdb.DuckDBPyConnection) -> None:
        with contextlib.suppress(duckdb.Error):  # a warehouse mid-upgrade: the sensor reads DuckDB
            inputs.append(read_trigger_inputs(con))

    def write() -> None:
        if inputs:
            with contextlib.suppress(OSError):
                write_snapshot(settings, inputs[0], stamp(settings))

    with connect_writer(settings, before_close=read, after_close=write) as con:
        yield con
