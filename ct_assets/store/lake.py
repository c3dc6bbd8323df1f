"""The warehouse as a DuckLake (cluster mode): an in-memory DuckDB with the lake attached as `wh` and
made the default catalog, so the warehouse's SQL reads and writes it unchanged. The catalog lives in
PostgreSQL ([cluster] catalog_db), the data files under [cluster] data_path (s3:// or a shared folder).

What DuckLake lacks and what stands in for it here: no PRIMARY KEY, UNIQUE or ON CONFLICT (the DDL
drops the keys; the writer lock and the file claims keep them true), no sequences (ids come from
PostgreSQL counters, see store.pg.reserve_ids), and `row_id` is reserved while data inlining is on
(the lake is created with `data_inlining_row_limit` 0, before any table)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import duckdb

from ct_assets.config.settings import ClusterSettings
from ct_assets.errors import ConfigError
from ct_assets.store import lake_extensions, pg
from ct_assets.store.sql import register_allocator

ALIAS = "wh"  # the catalog the lake is attached as (and made the default)


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def s3_secret_sql() -> str:
    """CREATE SECRET for httpfs from the AWS_* environment (AWS_ENDPOINT_URL for an S3-compatible store)."""
    e = os.environ
    key, secret = e.get("AWS_ACCESS_KEY_ID"), e.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        raise ConfigError(
            "cluster mode: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set (see docs/scale_out.md)"
        )
    parts = [
        f"KEY_ID {_sql_text(key)}",
        f"SECRET {_sql_text(secret)}",
        f"REGION {_sql_text(e.get('AWS_REGION') or e.get('AWS_DEFAULT_REGION') or 'us-east-1')}",
    ]
    endpoint = e.get("AWS_ENDPOINT_URL")
    if endpoint:
        url = urlparse(endpoint)
        if not url.netloc:
            raise ConfigError(
                f"cluster mode: AWS_ENDPOINT_URL must be a URL such as http://host:port, got {endpoint!r}"
            )
        parts += [
            f"ENDPOINT {_sql_text(url.netloc)}",
            "URL_STYLE 'path'",
            f"USE_SSL {'true' if url.scheme == 'https' else 'false'}",
        ]
    return f"CREATE OR REPLACE SECRET ct_s3 (TYPE s3, {', '.join(parts)})"


def connect(cluster: ClusterSettings) -> duckdb.DuckDBPyConnection:
    """A connection with the lake attached and in use; the caller closes it."""
    if not lake_extensions.installed():
        lake_extensions.install()
    con = duckdb.connect(config=lake_extensions.connection_config())  # type: ignore[arg-type]
    try:
        con.execute("SET enable_progress_bar = false")  # a session option: refused in connect(config=...)
        for name in lake_extensions.EXTENSIONS.values():
            con.execute(f"LOAD {name}")
        con.execute(s3_secret_sql())
        catalog = _sql_text(f"ducklake:postgres:{pg.dsn(cluster.catalog_db)}")
        con.execute(f"ATTACH {catalog} AS {ALIAS} (DATA_PATH {_sql_text(cluster.data_path)})")
        con.execute(f"USE {ALIAS}")
    except BaseException:
        con.close()
        raise
    return con


def prepare_new_lake(con: duckdb.DuckDBPyConnection) -> None:
    """Before the first table: no data inlining (it reserves the column name row_id, the default id)."""
    con.execute(f"CALL {ALIAS}.set_option('data_inlining_row_limit', 0)")


_CACHE = threading.local()  # this thread's open lake connection per cluster (attaching costs ~0.5 s)


@contextlib.contextmanager
def session(cluster: ClusterSettings) -> Iterator[duckdb.DuckDBPyConnection]:
    """This thread's lake connection, whose new ids (store.sql.next_id) come from PostgreSQL counters.

    Kept open between uses (DuckLake reads the newest snapshot at each transaction's start, so a kept
    connection sees every other writer's commits); dropped and closed when a block raises, so a
    connection in an unknown state is never handed out again."""
    cache: dict[tuple[int, ClusterSettings], tuple[duckdb.DuckDBPyConnection, list[Any]]] = getattr(
        _CACHE, "cons", {}
    )
    _CACHE.cons = cache
    key = (os.getpid(), cluster)
    if key not in cache:
        cache[key] = _open_session(cluster)
    con, ids = cache[key]
    try:
        yield con
    except BaseException:
        cache.pop(key, None)
        _close_session(con, ids)
        raise


def _open_session(cluster: ClusterSettings) -> tuple[duckdb.DuckDBPyConnection, list[Any]]:
    con = connect(cluster)
    ids: list[Any] = []  # the state database connection, opened at the first id

    def allocate(name: str, count: int) -> int:
        if not ids:
            ids.append(pg.connect(cluster.state_db))
        return pg.reserve_ids(ids[0], name, count)

    register_allocator(con, allocate)
    return con, ids


def _close_session(con: duckdb.DuckDBPyConnection, ids: list[Any]) -> None:
    register_allocator(con, None)
    with contextlib.suppress(duckdb.Error):
        con.close()
    for c in ids:
        c.close()


# The id columns next_id hands out, as `table.column` counters (seeded above what a table holds).
ID_COUNTERS = (
    ("ingest_log", "entry_id"),
    ("ingest_log", "batch_id"),
    ("label_events", "event_id"),
    ("schema_changes", "change_id"),
    ("golden_versions", "build_id"),
    ("ledger", "entry_id"),
    ("champion_scores", "score_id"),
    ("batch_decisions", "decision_id"),
    ("alerts", "alert_id"),
)


def seed_counters(con: duckdb.DuckDBPyConnection, cluster: ClusterSettings) -> None:
    """Counters above the ids the lake already holds (a warehouse moved in, or made before the counters)."""
    state = pg.connect(cluster.state_db)
    try:
        for table, column in ID_COUNTERS:
            top = con.execute(f"SELECT coalesce(max({column}), 0) FROM {table}").fetchall()[0][0]
            pg.seed_ids(state, f"{table}.{column}", int(top))
    finally:
        state.close()


def has_warehouse(con: duckdb.DuckDBPyConnection) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_catalog = ? AND table_name = 'meta'",
        [ALIAS],
    ).fetchall()
    return bool(rows[0][0])


def snapshot_id(cluster: ClusterSettings) -> int | None:
    """The lake's newest snapshot id, read from the catalog in PostgreSQL (no DuckDB needed): every
    commit, from any host, makes a new one."""
    con = pg.connect(cluster.catalog_db)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT max(snapshot_id) FROM ducklake_snapshot")
            row = cur.fetchone()
        return int(row[0]) if row and row[0] is not None else None
    finally:
        con.close()
