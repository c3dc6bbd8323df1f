"""The DuckDB warehouse: short-lived connections, one writer at a time, and the table layout.

DuckDB lets one process open a file read-write; a read-only open in another process fails while a
writer holds it, and a reader holding it makes writers fail. So writers first take an OS file lock
beside the warehouse (released by the kernel when the process dies, so a killed process cannot leave
it held), then retry the DuckDB open for the few milliseconds a reader (the sensors, `status`) may
hold it. Readers never wait long: they raise WarehouseBusy and the caller skips or retries.

Cluster mode ([cluster], store.lake): the same connections on a DuckLake, the OS file lock replaced by
a PostgreSQL advisory lock (store.pg.writer_lock), which PostgreSQL drops with a dead holder's socket.
Readers take no lock: a DuckLake reader sees the last committed snapshot.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from ct_assets.config import Settings
from ct_assets.errors import WarehouseBusy, WarehouseMissing
from ct_assets.store import evolution, lake, pg, schema

_LOCAL = threading.local()  # per-thread re-entrancy of the file locks


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


def named_lock(
    settings: Settings, name: str, timeout_seconds: float, what: str
) -> contextlib.AbstractContextManager[None]:
    """A lock beside the warehouse ("train", "predictions"): the file `<warehouse>.<name>.lock`, or in
    cluster mode a PostgreSQL advisory lock, cluster-wide (CLI runs executed in-process bypass the run
    queue; these locks do not)."""
    if settings.cluster is not None:
        return pg.advisory_lock(
            settings.cluster.state_db, pg.named_key(name), timeout_seconds, f"{what} (cluster-wide)"
        )
    path = settings.paths.warehouse
    return file_lock(path.with_name(f"{path.name}.{name}.lock"), timeout_seconds, what)


@contextlib.contextmanager
def connect_writer(
    settings: Settings,
    *,
    before_close: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
    after_close: Callable[[], None] | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection, under the writer lock; closed (and the lock released) on exit.

    When the block ends normally, `before_close(con)` runs on the open connection and `after_close()`
    once it is closed, both still under the writer lock (how a caller leaves a snapshot of what it
    wrote, stamped with the files as they are then; see ct_assets.core.triggers.snapshot)."""
    with _writer(settings, after_close) as con:
        schema.require_current(con, where(settings))
        evolution.reconcile(con, settings, write=True)  # the first writer adds new optional features
        yield con
        if before_close is not None:
            before_close(con)


def where(settings: Settings) -> str:
    """The warehouse as people know it: its file, or the DuckLake catalog and data path."""
    c = settings.cluster
    if c is None:
        return str(settings.paths.warehouse)
    return f"DuckLake {c.catalog_db} ({c.data_path})"


@contextlib.contextmanager
def _writer(
    settings: Settings, after_close: Callable[[], None] | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection under the writer lock, closed on exit (cluster mode: this thread's kept
    lake connection); when the block ends normally, `after_close()` runs still under the lock."""
    c = settings.cluster
    if c is not None:
        with pg.writer_lock(c.state_db, settings.lock_timeout_seconds):
            with lake.session(c) as con:
                yield con
            if after_close is not None:
                after_close()
        return
    path = settings.paths.warehouse
    if not path.exists():
        raise WarehouseMissing(f"no warehouse at {path}; run `ct-assets init` first")
    with writer_lock(path, settings.lock_timeout_seconds):
        con = _open(path, read_only=False, wait_seconds=max(settings.lock_timeout_seconds, 5.0))
        try:
            yield con
        finally:
            con.close()
        if after_close is not None:
            after_close()


@contextlib.contextmanager
def connect_reader(settings: Settings, *, wait_seconds: float = 0.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection; raises WarehouseBusy at once (or after `wait_seconds`) if a writer holds it."""
    with contextlib.ExitStack() as stack:
        if settings.cluster is not None:
            con = stack.enter_context(lake.session(settings.cluster))
        else:
            path = settings.paths.warehouse
            if not path.exists():
                raise WarehouseMissing(f"no warehouse at {path}; run `ct-assets init` first")
            con = _open(path, read_only=True, wait_seconds=wait_seconds)
            stack.callback(con.close)
        schema.require_current(con, where(settings))
        evolution.reconcile(con, settings, write=False)  # refuses a config the warehouse cannot follow
        yield con


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
    if settings.cluster is not None:
        pg.ensure_state(settings.cluster.state_db)
        with _writer(settings) as con:
            if not lake.has_warehouse(con):
                lake.prepare_new_lake(con)
                created.append(where(settings))
            schema.create_or_upgrade(con, settings)
            lake.seed_counters(con, settings.cluster)
        return created
    path = settings.paths.warehouse
    if not path.exists():
        created.append(str(path))
    with writer_lock(path, settings.lock_timeout_seconds):
        con = _open(path, read_only=False, wait_seconds=max(settings.lock_timeout_seconds, 5.0))
        try:
            schema.create_or_upgrade(con, settings)
        finally:
            con.close()
    return created
