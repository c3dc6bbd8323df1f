"""The warehouse's tables: their layout (from the configured columns), creation, upgrades, and the
schema check that refuses a config the warehouse cannot follow (store.evolution adds what it can)."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from ct_assets.config.settings import Settings
from ct_assets.errors import WarehouseMissing
from ct_assets.store import evolution
from ct_assets.store.columns import raw_delta_columns, row_key
from ct_assets.store.hashing import key_hash_sql, row_hash_sql
from ct_assets.store.sql import fetch_value, is_lake, quote, set_meta

__all__ = ["SCHEMA_VERSION", "content_columns", "raw_delta_columns", "reserve_sql", "row_key"]

_KEY = re.compile(r"\s+PRIMARY KEY", re.IGNORECASE)
SCHEMA_VERSION = 5  # 5: label_events, schema_changes, per-batch hash columns, the predictions table


def require_current(con: duckdb.DuckDBPyConnection, path: Path | str) -> None:
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


def _rows_table_ddl(name: str, settings: Settings, extra: str) -> str:
    body = ",\n  ".join(f"{quote(n)} {t}" for n, t in raw_delta_columns(settings))
    return f"CREATE TABLE IF NOT EXISTS {name} (\n  {body},\n  {extra}\n)"


ROLE_CHAMPION, ROLE_SHADOW = "champion", "shadow"  # predictions.role


def _predictions_ddl(settings: Settings) -> str:
    """Append-only: one row per (batch, row key, role, model version). Role `champion`: the score the
    champion in force served (one per row); `shadow`: a challenger awaiting promotion or review."""
    key, key_type = row_key(settings)
    return f"""CREATE TABLE IF NOT EXISTS predictions (
            _batch_id BIGINT NOT NULL, {quote(key)} {key_type} NOT NULL,
            {quote(settings.columns.event_time)} TIMESTAMP, role VARCHAR NOT NULL,
            model_version VARCHAR NOT NULL, score DOUBLE NOT NULL, decision BOOLEAN NOT NULL,
            scored_at TIMESTAMP NOT NULL, run_id VARCHAR)"""


_GOLDEN_VERSIONS_DDL = """CREATE TABLE IF NOT EXISTS golden_versions (
            build_id BIGINT PRIMARY KEY, golden_hash VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL, rows BIGINT,
            max_batch_id BIGINT, slice_counts VARCHAR, reason VARCHAR, run_id VARCHAR, window_start TIMESTAMP,
            changes VARCHAR)"""


def _ddl(settings: Settings) -> list[str]:
    return [
        "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
        # _reserve: the row's key falls in the golden reserve (a stable hash bucket; never trained on).
        # _content_hash: its event time and features, whatever its id (rows equal in content to a reserve
        # row are never trained on either).
        _rows_table_ddl(
            "raw_deltas",
            settings,
            "_batch_id BIGINT NOT NULL, _row_hash UBIGINT NOT NULL, _reserve BOOLEAN, _content_hash UBIGINT",
        ),
        """CREATE TABLE IF NOT EXISTS ingest_log (
            entry_id BIGINT PRIMARY KEY, logged_at TIMESTAMP NOT NULL, file_name VARCHAR NOT NULL,
            file_hash VARCHAR NOT NULL, file_bytes BIGINT, status VARCHAR NOT NULL, reason VARCHAR,
            batch_id BIGINT, rows BIGINT, rows_labelled BIGINT, rows_duplicate BIGINT,
            min_event_time TIMESTAMP, max_event_time TIMESTAMP, data_hash VARCHAR,
            landed_at TIMESTAMP, stored_as VARCHAR, run_id VARCHAR, kind VARCHAR,
            labels_attached BIGINT, labels_pending BIGINT, labels_conflict BIGINT, labels_duplicate BIGINT,
            row_columns VARCHAR, content_columns VARCHAR)""",
        # Labels that arrive after their rows (or before them), append-only: which labels a model saw
        # is exactly the attached events of the batches up to its data set's newest batch.
        f"""CREATE TABLE IF NOT EXISTS label_events (
            event_id BIGINT NOT NULL, recorded_at TIMESTAMP NOT NULL, batch_id BIGINT NOT NULL,
            label_batch_id BIGINT NOT NULL, row_key {_key_type(settings)}, row_batch_id BIGINT,
            label {_label_type(settings)} NOT NULL, label_time TIMESTAMP, arrived_at TIMESTAMP NOT NULL,
            delay_seconds DOUBLE, status VARCHAR NOT NULL, source_event_id BIGINT)""",
        """CREATE TABLE IF NOT EXISTS schema_changes (
            change_id BIGINT PRIMARY KEY, changed_at TIMESTAMP NOT NULL, change VARCHAR NOT NULL,
            column_name VARCHAR NOT NULL, sql_type VARCHAR, config_source VARCHAR)""",
        _rows_table_ddl("golden_rows", settings, "_batch_id BIGINT, _row_hash UBIGINT, _golden_hash VARCHAR"),
        _GOLDEN_VERSIONS_DDL,
        """CREATE TABLE IF NOT EXISTS dataset_versions (
            dataset_hash VARCHAR PRIMARY KEY, created_at TIMESTAMP NOT NULL, max_batch_id BIGINT,
            window_start TIMESTAMP, newest_event_time TIMESTAMP, golden_hash VARCHAR,
            n_train BIGINT, n_holdout BIGINT, train_hash VARCHAR, holdout_hash VARCHAR,
            holdout_start_time TIMESTAMP, rows_unlabelled BIGINT, run_id VARCHAR, selection BIGINT,
            excluded_batches VARCHAR, rows_reserved BIGINT, rows_same_content BIGINT, rows_held_back BIGINT,
            rows_late_labelled BIGINT)""",
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
        """CREATE TABLE IF NOT EXISTS batch_decisions (
            decision_id BIGINT PRIMARY KEY, recorded_at TIMESTAMP NOT NULL, batch_id BIGINT NOT NULL,
            status VARCHAR NOT NULL, champion_version VARCHAR, rows_labelled BIGINT, metric VARCHAR,
            value DOUBLE, reference DOUBLE, spread DOUBLE, reason VARCHAR, actor VARCHAR, run_id VARCHAR)""",
        """CREATE TABLE IF NOT EXISTS alerts (
            alert_id BIGINT PRIMARY KEY, raised_at TIMESTAMP NOT NULL, kind VARCHAR NOT NULL,
            cause VARCHAR NOT NULL, message VARCHAR NOT NULL, details VARCHAR, delivered VARCHAR,
            resolved_at TIMESTAMP)""",
        _predictions_ddl(settings),
    ]


# Upgrades of warehouses made by earlier versions, in order; each is idempotent.
UPGRADES = [
    "ALTER TABLE alerts ADD COLUMN IF NOT EXISTS resolved_at TIMESTAMP",
    "ALTER TABLE raw_deltas ADD COLUMN IF NOT EXISTS _reserve BOOLEAN",
    "ALTER TABLE raw_deltas ADD COLUMN IF NOT EXISTS _content_hash UBIGINT",
    "ALTER TABLE golden_versions ADD COLUMN IF NOT EXISTS window_start TIMESTAMP",
    "ALTER TABLE golden_versions ADD COLUMN IF NOT EXISTS changes VARCHAR",
    "ALTER TABLE dataset_versions ADD COLUMN IF NOT EXISTS selection BIGINT",
    "ALTER TABLE dataset_versions ADD COLUMN IF NOT EXISTS excluded_batches VARCHAR",
    "ALTER TABLE dataset_versions ADD COLUMN IF NOT EXISTS rows_reserved BIGINT",
    "ALTER TABLE dataset_versions ADD COLUMN IF NOT EXISTS rows_same_content BIGINT",
    "ALTER TABLE dataset_versions ADD COLUMN IF NOT EXISTS rows_held_back BIGINT",
    "ALTER TABLE dataset_versions ADD COLUMN IF NOT EXISTS rows_late_labelled BIGINT",
    *(
        f"ALTER TABLE ingest_log ADD COLUMN IF NOT EXISTS {c}"
        for c in (
            "kind VARCHAR",
            "labels_attached BIGINT",
            "labels_pending BIGINT",
            "labels_conflict BIGINT",
            "labels_duplicate BIGINT",
            "row_columns VARCHAR",
            "content_columns VARCHAR",
        )
    ),
]


def _key_type(settings: Settings) -> str:
    cols = settings.columns
    return "BIGINT" if cols.row_id and cols.row_id_type == "integer" else "VARCHAR"


def _label_type(settings: Settings) -> str:
    return "VARCHAR" if settings.columns.label_is_text else "BIGINT"


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
        "INSERT INTO golden_versions (build_id, golden_hash, created_at, rows, max_batch_id, slice_counts, reason, "
        "run_id) SELECT row_number() OVER (ORDER BY created_at, golden_hash), golden_hash, "
        "created_at, rows, max_batch_id, slice_counts, reason, run_id FROM golden_versions_v1"
    )
    con.execute("DROP TABLE golden_versions_v1")
    con.execute("COMMIT")


def check_schema(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Refuse a config the warehouse cannot follow (see store.evolution); adds nothing."""
    evolution.reconcile(con, settings, write=False)


def create_or_upgrade(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Create the tables that are missing, apply the upgrades, check the columns, stamp the version."""
    lake = is_lake(con)
    for stmt in _ddl(settings):
        con.execute(_KEY.sub("", stmt) if lake else stmt)  # DuckLake has no PRIMARY KEY
    _upgrade_golden_versions(con)
    for stmt in UPGRADES:
        con.execute(stmt)
    evolution.adopt(con, settings)  # before any change: the columns existing batches were hashed over
    evolution.reconcile(con, settings, write=True)
    _fill_reserve(con, settings)
    set_meta(con, "schema_version", str(SCHEMA_VERSION))
    set_meta(con, "created_at", str(fetch_value(con, "SELECT CAST(now() AS VARCHAR)")), keep=True)


def reserve_sql(settings: Settings, alias: str = "") -> str:
    """Whether a row's key falls in the golden reserve: a stable hash bucket of its id (of its content,
    event time and features, when rows have no id: the same event landed again once its label arrived
    stays on its side) holding [dataset] golden_fraction of all keys. Decided at ingest and stored."""
    buckets = round(settings.dataset.golden_fraction * RESERVE_BUCKETS)
    if settings.columns.row_id:
        key = key_hash_sql(settings.columns.row_id, [], alias)
    else:
        key = row_hash_sql(content_columns(settings), alias)
    return f"({key} % {RESERVE_BUCKETS} < {buckets})"


RESERVE_BUCKETS = 10_000


def content_columns(settings: Settings) -> list[str]:
    """The columns a row's content is compared on: its event time and features (not its id, nor its
    label, which may arrive or change later)."""
    return [settings.columns.event_time, *settings.feature_names]


def _fill_reserve(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Rows stored before schema 4 get their reserve flag and content hash. Their reserve is exactly the
    active golden set's rows (by key), the only rows no earlier model was allowed to train on; rows
    ingested from now on fall in the reserve by the stable hash bucket."""
    missing = con.execute("SELECT count(*) FROM raw_deltas WHERE _reserve IS NULL").fetchall()[0][0]
    if not missing:
        return
    key = quote(settings.columns.row_id) if settings.columns.row_id else "_row_hash"
    active = con.execute("SELECT golden_hash FROM golden_versions ORDER BY build_id DESC LIMIT 1").fetchall()
    golden = active[0][0] if active else ""
    con.execute(
        f"""UPDATE raw_deltas SET
              _reserve = {key} IN (SELECT {key} FROM golden_rows WHERE _golden_hash = ?),
              _content_hash = {evolution.batch_hash_sql(con, "content")}
            WHERE _reserve IS NULL""",
        [golden],
    )
