"""The DuckDB warehouse: short-lived connections, one writer at a time, and the table layout.

DuckDB lets one process open a file read-write; a read-only open in another process fails while a
writer holds it, and a reader holding it makes writers fail. So writers first take an OS file lock
beside the warehouse (released by the kernel when the process dies, so a killed process cannot leave
it held), then retry the DuckDB open for the few milliseconds a reader (the sensors, `status`) may
hold it. Readers never wait long: they raise WarehouseBusy and the caller skips or retries.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from ct_assets.config import Settings
from ct_assets.errors import ConfigError, WarehouseBusy, WarehouseMissing

SCHEMA_VERSION = 3
_LOCAL = threading.local()  # per-thread re-entrancy of the file locks


def quote(name: str) -> str:
    """Quote an identifier for DuckDB SQL (names come from the config, never from data)."""
    return '"' + name.replace('"', '""') + '"'


def _is_lock_conflict(err: Exception) -> bool:
    text = str(err).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


@contextlib.contextmanager
def file_lock(lock_path: Path, timeout_seconds: float, what: str) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path`, waiting up to `timeout_seconds`.

    Re-entrant within a thread; the kernel releases it when the process dies, however it dies.
    """
    held: set[str] = getattr(_LOCAL, "held", set())
    _LOCAL.held = held
    key = str(lock_path)
    if key in held:
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WarehouseBusy(
                        f"{what} is held by another process; gave up after {timeout_seconds:.0f} s "
                        f"(lock file {lock_path})"
                    ) from None
                time.sleep(0.05)
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def writer_lock(warehouse: Path, timeout_seconds: float) -> contextlib.AbstractContextManager[None]:
    """The single-writer lock of the warehouse (`<warehouse>.lock`)."""
    return file_lock(
        warehouse.with_name(warehouse.name + ".lock"),
        timeout_seconds,
        f"the writer lock of warehouse {warehouse}",
    )


@contextlib.contextmanager
def connect_writer(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection, under the writer lock; closed (and the lock released) on exit."""
    path = settings.paths.warehouse
    if not path.exists():
        raise WarehouseMissing(f"no warehouse at {path}; run `ct-assets init` first")
    with writer_lock(path, settings.lock_timeout_seconds):
        con = _open(path, read_only=False, wait_seconds=max(settings.lock_timeout_seconds, 5.0))
        try:
            _require_current_schema(con, path)
            yield con
        except BaseException:
            con.close()
            raise
        _close_leaving_trigger_snapshot(con, settings)


def _close_leaving_trigger_snapshot(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Close a writer's connection and, still under the writer lock, leave the retrain sensor's snapshot
    of the trigger inputs stamped with the files as they are now (see ct_assets.lib.triggers)."""
    from ct_assets.lib import triggers  # triggers reads through this module

    try:
        inputs = triggers.read_trigger_inputs(con)
    except duckdb.Error:
        inputs = None  # a warehouse being initialised: the sensor reads DuckDB until the next write
    finally:
        con.close()
    if inputs is not None:
        with contextlib.suppress(OSError):
            triggers.write_snapshot(settings, inputs, triggers.warehouse_stamp(settings.paths.warehouse))


def _require_current_schema(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    try:
        rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    except duckdb.CatalogException:
        raise WarehouseMissing(
            f"{path} is not a ct_assets warehouse (no meta table); run `ct-assets init`"
        ) from None
    version = int(rows[0][0]) if rows else 0
    if version < SCHEMA_VERSION:
        raise WarehouseMissing(
            f"warehouse {path} has schema {version}, this ct_assets needs {SCHEMA_VERSION}: "
            "run `ct-assets init` to upgrade it"
        )


@contextlib.contextmanager
def connect_reader(settings: Settings, *, wait_seconds: float = 0.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection; raises WarehouseBusy at once (or after `wait_seconds`) if a writer holds it."""
    path = settings.paths.warehouse
    if not path.exists():
        raise WarehouseMissing(f"no warehouse at {path}; run `ct-assets init` first")
    con = _open(path, read_only=True, wait_seconds=wait_seconds)
    try:
        _require_current_schema(con, path)
        yield con
    finally:
        con.close()


def _open(path: Path, *, read_only: bool, wait_seconds: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + wait_seconds
    delay = 0.01
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as e:
            if not _is_lock_conflict(e):
                raise
            if time.monotonic() >= deadline:
                raise WarehouseBusy(f"warehouse {path} is locked by another process ({_holder(e)})") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        except duckdb.ConnectionException as e:
            # Same process, other configuration (a read-write handle is still open here).
            raise WarehouseBusy(f"warehouse {path} is already open in this process: {e}") from None


def _holder(err: Exception) -> str:
    text = str(err)
    i = text.find("PID")
    return text[i : text.find(")", i)] if i >= 0 else "writer"


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: commit when the block ends normally, roll back on any exception."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def raw_delta_columns(settings: Settings) -> list[tuple[str, str]]:
    """(name, DuckDB type) of the user columns of raw_deltas, in table order."""
    cols = settings.columns
    out = [(cols.event_time, "TIMESTAMP")]
    if cols.row_id:
        out.append((cols.row_id, "BIGINT" if cols.row_id_type == "integer" else "VARCHAR"))
    for f in settings.features:
        out.append((f.name, "DOUBLE" if f.kind == "numeric" else "VARCHAR"))
    out.append((cols.label, "VARCHAR" if cols.label_is_text else "BIGINT"))
    if cols.exploration:
        out.append((cols.exploration, "BOOLEAN"))
    return out


def _rows_table_ddl(name: str, settings: Settings, extra: str) -> str:
    body = ",\n  ".join(f"{quote(n)} {t}" for n, t in raw_delta_columns(settings))
    return f"CREATE TABLE IF NOT EXISTS {name} (\n  {body},\n  {extra}\n)"


_GOLDEN_VERSIONS_DDL = """CREATE TABLE IF NOT EXISTS golden_versions (
            build_id BIGINT PRIMARY KEY, golden_hash VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL, rows BIGINT,
            max_batch_id BIGINT, slice_counts VARCHAR, reason VARCHAR, run_id VARCHAR)"""


def _ddl(settings: Settings) -> list[str]:
    return [
        "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
        _rows_table_ddl("raw_deltas", settings, "_batch_id BIGINT NOT NULL, _row_hash UBIGINT NOT NULL"),
        """CREATE TABLE IF NOT EXISTS ingest_log (
            entry_id BIGINT PRIMARY KEY, logged_at TIMESTAMP NOT NULL, file_name VARCHAR NOT NULL,
            file_hash VARCHAR NOT NULL, file_bytes BIGINT, status VARCHAR NOT NULL, reason VARCHAR,
            batch_id BIGINT, rows BIGINT, rows_labelled BIGINT, rows_duplicate BIGINT,
            min_event_time TIMESTAMP, max_event_time TIMESTAMP, data_hash VARCHAR,
            landed_at TIMESTAMP, stored_as VARCHAR, run_id VARCHAR)""",
        _rows_table_ddl("golden_rows", settings, "_batch_id BIGINT, _row_hash UBIGINT, _golden_hash VARCHAR"),
        _GOLDEN_VERSIONS_DDL,
        """CREATE TABLE IF NOT EXISTS dataset_versions (
            dataset_hash VARCHAR PRIMARY KEY, created_at TIMESTAMP NOT NULL, max_batch_id BIGINT,
            window_start TIMESTAMP, newest_event_time TIMESTAMP, golden_hash VARCHAR,
            n_train BIGINT, n_holdout BIGINT, train_hash VARCHAR, holdout_hash VARCHAR,
            holdout_start_time TIMESTAMP, rows_unlabelled BIGINT, run_id VARCHAR)""",
        """CREATE TABLE IF NOT EXISTS models (
            version VARCHAR PRIMARY KEY, created_at TIMESTAMP NOT NULL, dataset_hash VARCHAR,
            code_version VARCHAR, params VARCHAR, n_train BIGINT, n_holdout BIGINT,
            train_seconds DOUBLE, watermark_batch_id BIGINT, watermark_event_time TIMESTAMP,
            model_sha256 VARCHAR, run_id VARCHAR)""",
        """CREATE TABLE IF NOT EXISTS validations (
            challenger_version VARCHAR NOT NULL, champion_version VARCHAR, created_at TIMESTAMP NOT NULL,
            passed BOOLEAN NOT NULL, failed_checks VARCHAR, summary VARCHAR, golden_hash VARCHAR,
            dataset_hash VARCHAR, report_path VARCHAR, run_id VARCHAR)""",
        """CREATE TABLE IF NOT EXISTS ledger (
            entry_id BIGINT PRIMARY KEY, recorded_at TIMESTAMP NOT NULL, action VARCHAR NOT NULL,
            version VARCHAR, champion_before VARCHAR, champion_after VARCHAR, data_hash VARCHAR,
            metrics VARCHAR, verdict VARCHAR, reason VARCHAR, actor VARCHAR, run_id VARCHAR)""",
        """CREATE TABLE IF NOT EXISTS champion_scores (
            score_id BIGINT PRIMARY KEY, scored_at TIMESTAMP NOT NULL, champion_version VARCHAR NOT NULL,
            from_batch BIGINT, to_batch BIGINT, rows_labelled BIGINT, metric VARCHAR, value DOUBLE,
            reference DOUBLE, decayed BOOLEAN, decay_reason VARCHAR, drift_max_psi DOUBLE,
            drifted_features VARCHAR, drift_rows BIGINT)""",
        """CREATE TABLE IF NOT EXISTS alerts (
            alert_id BIGINT PRIMARY KEY, raised_at TIMESTAMP NOT NULL, kind VARCHAR NOT NULL,
            cause VARCHAR NOT NULL, message VARCHAR NOT NULL, details VARCHAR, delivered VARCHAR,
            resolved_at TIMESTAMP)""",
    ]


# Upgrades of warehouses made by earlier versions, in order; each is idempotent.
UPGRADES = [
    "ALTER TABLE alerts ADD COLUMN IF NOT EXISTS resolved_at TIMESTAMP",
]


def init_warehouse(settings: Settings) -> list[str]:
    """Create or upgrade the warehouse and the folders; idempotent. Returns what was created."""
    created = []
    for p in (
        settings.paths.landing,
        settings.paths.quarantine,
        settings.paths.archive,
        settings.paths.models,
        settings.paths.reports,
        settings.paths.state,
        settings.paths.warehouse.parent,
    ):
        if not p.exists():
            p.mkdir(parents=True, exist_ok=True)
            created.append(str(p))
    path = settings.paths.warehouse
    if not path.exists():
        created.append(str(path))
    with writer_lock(path, settings.lock_timeout_seconds):
        con = _open(path, read_only=False, wait_seconds=max(settings.lock_timeout_seconds, 5.0))
        try:
            for stmt in _ddl(settings) + UPGRADES:
                con.execute(stmt)
            _upgrade_golden_versions(con)
            check_schema(con, settings)
            con.execute(
                "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [str(SCHEMA_VERSION)],
            )
            con.execute(
                "INSERT INTO meta VALUES ('created_at', CAST(now() AS VARCHAR)) ON CONFLICT (key) DO NOTHING"
            )
        finally:
            con.close()
    return created


def _upgrade_golden_versions(con: duckdb.DuckDBPyConnection) -> None:
    """Schema 1 keyed golden_versions by hash; schema 2 keeps one row per build (build_id)."""
    cols = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'golden_versions'"
        ).fetchall()
    }
    if "build_id" in cols:
        return
    con.execute("BEGIN TRANSACTION")
    con.execute("ALTER TABLE golden_versions RENAME TO golden_versions_v1")
    con.execute(_GOLDEN_VERSIONS_DDL)
    con.execute(
        "INSERT INTO golden_versions SELECT row_number() OVER (ORDER BY created_at, golden_hash), golden_hash, "
        "created_at, rows, max_batch_id, slice_counts, reason, run_id FROM golden_versions_v1"
    )
    con.execute("DROP TABLE golden_versions_v1")
    con.execute("COMMIT")


def check_schema(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Refuse a config whose columns do not match the warehouse it points at."""
    have = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'raw_deltas' AND table_schema = 'main' ORDER BY ordinal_position"
    ).fetchall()
    have_user = [(n, t) for n, t in have if not n.startswith("_")]
    want = raw_delta_columns(settings)
    if have_user != want:
        diff = sorted(set(have_user) ^ set(want))
        raise ConfigError(
            f"warehouse {settings.paths.warehouse} holds raw_deltas with other columns than the config "
            f"{settings.source} names (first difference: {diff[0] if diff else 'column order'}); "
            "point [paths] warehouse at a new file for a new schema"
        )


def fetch_one(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> tuple | None:
    """The first row of a query, or None. Reads the whole result (DuckDB 2 refuses further work on a
    connection whose last result was not read to the end)."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def fetch_value(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> Any:
    row = fetch_one(con, sql, params)
    return row[0] if row else None


def next_id(con: duckdb.DuckDBPyConnection, table: str, column: str) -> int:
    """The next integer key of an append-only table (callers hold the writer lock)."""
    return int(fetch_value(con, f"SELECT coalesce(max({column}), 0) + 1 FROM {table}") or 1)
