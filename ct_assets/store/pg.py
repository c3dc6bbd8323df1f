"""PostgreSQL beside the DuckLake warehouse (cluster mode): connections from libpq's environment
variables, the cluster-wide writer lock (an advisory lock, the OS file lock's replacement), run
liveness locks, and the id counters that replace max()+1.

psycopg2 is imported here only, and only in cluster mode (the `cluster` extra)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any

from ct_assets.errors import ConfigError, WarehouseBusy

LOCK_NAMESPACE = 0x0C7A  # advisory lock class of ct_assets (first key of the two-int form)
WRITER_LOCK, RUN_LOCK = 1, 2  # second key: the writer lock; run liveness locks use a hash of the run id
_LOCAL = threading.local()

_STATE_DDL = (
    """CREATE TABLE IF NOT EXISTS ct_ids (
        name text PRIMARY KEY, next_value bigint NOT NULL CHECK (next_value > 0))""",
    """CREATE TABLE IF NOT EXISTS ingest_claims (
        file_hash text PRIMARY KEY, file_name text NOT NULL, run_id text NOT NULL,
        state text NOT NULL DEFAULT 'claimed' CHECK (state IN ('claimed', 'done')),
        claimed_at timestamptz NOT NULL DEFAULT now(), done_at timestamptz, takeovers int NOT NULL DEFAULT 0)""",
)


def dsn(dbname: str) -> str:
    """A libpq connection string naming only the database: host, port, user and password come from
    PGHOST, PGPORT, PGUSER and PGPASSWORD (libpq reads them itself, so they never reach a log)."""
    missing = [v for v in ("PGHOST", "PGUSER") if not os.environ.get(v)]
    if missing:
        raise ConfigError(
            f"cluster mode: environment variable {missing[0]} is not set (see docs/scale_out.md)"
        )
    return f"dbname={dbname}"


def connect(dbname: str, *, autocommit: bool = True) -> Any:
    """A psycopg2 connection to `dbname`; autocommit by default (each statement its own transaction)."""
    import psycopg2

    try:
        con = psycopg2.connect(dsn(dbname), connect_timeout=10, application_name="ct_assets")
    except psycopg2.OperationalError as e:
        raise WarehouseBusy(
            f"PostgreSQL database {dbname!r} unreachable: {str(e).strip().splitlines()[0]}"
        ) from None
    con.autocommit = autocommit
    return con


def ensure_state(dbname: str) -> None:
    """Create the claims and id-counter tables (idempotent)."""
    con = connect(dbname)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s, 0)", (LOCK_NAMESPACE,))  # CREATE IF NOT EXISTS races
            for stmt in _STATE_DDL:
                cur.execute(stmt)
    finally:
        con.close()


def writer_lock(dbname: str, timeout_seconds: float) -> contextlib.AbstractContextManager[None]:
    """The cluster-wide single-writer lock of the warehouse (the OS file lock's replacement)."""
    return advisory_lock(
        dbname, WRITER_LOCK, timeout_seconds, f"the cluster writer lock (PostgreSQL database {dbname})"
    )


def named_key(name: str) -> int:
    """The advisory lock key of a named lock ("train", "predictions"), clear of WRITER_LOCK."""
    return 16 + zlib.crc32(name.encode()) % (1 << 30)


@contextlib.contextmanager
def advisory_lock(dbname: str, key: int, timeout_seconds: float, what: str) -> Iterator[None]:
    """A session advisory lock held on its own connection for the block, waiting up to
    `timeout_seconds`. PostgreSQL drops it when that connection ends, however the process dies.
    Re-entrant within a thread, like the embedded mode's file locks."""
    held: set[tuple[str, int]] = getattr(_LOCAL, "held", set())
    _LOCAL.held = held
    if (dbname, key) in held:
        yield
        return
    con = connect(dbname)
    try:
        deadline = time.monotonic() + timeout_seconds
        with con.cursor() as cur:
            while True:
                cur.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NAMESPACE, key))
                if cur.fetchone()[0]:
                    break
                if time.monotonic() >= deadline:
                    raise WarehouseBusy(
                        f"{what} is held by another process; gave up after {timeout_seconds:.0f} s"
                    )
                time.sleep(0.05)
        held.add((dbname, key))
        try:
            yield
        finally:
            held.discard((dbname, key))
    finally:
        con.close()  # releases the advisory lock


def run_key(run_id: str) -> int:
    """The advisory lock key (a signed int4) standing for `run_id`."""
    return zlib.crc32(run_id.encode()) - (1 << 31)


@contextlib.contextmanager
def run_alive(dbname: str, run_id: str) -> Iterator[Any]:
    """Hold the run's liveness lock for the block (yields the holding connection). Another process sees
    the run as alive exactly while this connection lives: a killed run's lock goes with its socket."""
    con = connect(dbname)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_NAMESPACE + RUN_LOCK, run_key(run_id)))
        yield con
    finally:
        con.close()


def run_is_alive(con: Any, run_id: str) -> bool:
    """Whether some session holds `run_id`'s liveness lock (a hash collision errs towards alive)."""
    with con.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = %s "
            "AND objid = (%s::bigint & 4294967295)::oid AND objsubid = 2",
            (LOCK_NAMESPACE + RUN_LOCK, run_key(run_id)),
        )
        return int(cur.fetchone()[0]) > 0


def reserve_ids(con: Any, name: str, count: int = 1) -> int:
    """Reserve `count` consecutive ids of counter `name` (atomic, whatever the writers); returns the
    first. A counter starts at 1, or above what the table already holds (see `seed_ids`)."""
    with con.cursor() as cur:
        cur.execute(
            "INSERT INTO ct_ids AS c (name, next_value) VALUES (%(n)s, 1 + %(k)s) ON CONFLICT (name) "
            "DO UPDATE SET next_value = c.next_value + %(k)s RETURNING next_value - %(k)s",
            {"n": name, "k": max(count, 1)},
        )
        return int(cur.fetchone()[0])


def seed_ids(con: Any, name: str, above: int) -> None:
    """Make counter `name` hand out ids above `above` (a warehouse that already holds rows)."""
    with con.cursor() as cur:
        cur.execute(
            "INSERT INTO ct_ids AS c (name, next_value) VALUES (%(n)s, %(v)s) ON CONFLICT (name) "
            "DO UPDATE SET next_value = greatest(c.next_value, %(v)s)",
            {"n": name, "v": above + 1},
        )
