"""[cluster]: cluster mode (docs/scale_out.md). Absent, nothing changes: the DuckDB file, the SQLite
Dagster instance and the local folders of [paths]. Present, the warehouse is a DuckLake (catalog in
PostgreSQL, data files under `data_path`), the Dagster instance lives in PostgreSQL, and landing,
quarantine, archive, models, reports and state live under the `objects` prefix (s3://bucket/prefix).
The [paths] folders then only hold this process's scratch copies (nothing shared).

Secrets and addresses never come from the TOML: PostgreSQL from PGHOST, PGPORT, PGUSER, PGPASSWORD
(libpq's own variables), S3 from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and, for an
S3-compatible store other than AWS, AWS_ENDPOINT_URL (boto3's own variables)."""

from __future__ import annotations

import re
from typing import Any

from ct_assets.config.reader import TableReader
from ct_assets.config.settings import ClusterSettings

CLUSTER_KEYS = {"objects", "data_path", "catalog_db", "state_db", "dagster_db", "executor"}
__all__ = ["CLUSTER_KEYS", "PG_ENV", "S3_ENV", "ClusterSettings", "parse_cluster"]
PG_ENV = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD")
S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ENDPOINT_URL")
_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def parse_cluster(table: dict[str, Any] | None, source: str) -> ClusterSettings | None:
    """[cluster] as ClusterSettings; None when the table is absent or empty (embedded mode)."""
    if not table or set(table) <= {"executor"}:  # steps on Dask workers alone (config.engines) keep the
        return None  # embedded storage
    c = TableReader(table, "cluster", source, known=CLUSTER_KEYS)
    objects = c.text("objects")
    if not objects.startswith("s3://") or len(objects) <= len("s3://"):
        raise c.error("objects", f"must be an s3://bucket/prefix URI, got {objects!r}")
    data_path = c.text("data_path")
    if "'" in data_path or not (data_path.startswith("s3://") or data_path.startswith("/")):
        raise c.error("data_path", f"must be an s3:// URI or an absolute shared folder, got {data_path!r}")
    dbs = {}
    for key in ("catalog_db", "state_db", "dagster_db"):
        if key in table:
            name = c.text(key)
            if not _DB_NAME.fullmatch(name):
                raise c.error(key, f"must be a plain PostgreSQL database name (a-z, 0-9, _), got {name!r}")
            dbs[key] = name
    return ClusterSettings(objects=objects.rstrip("/"), data_path=data_path.rstrip("/") + "/", **dbs)
