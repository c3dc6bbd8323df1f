"""The plain-script reference for one ingest: what a cron job would do with one landed delta.

    python bench/ingest_script.py FILE WAREHOUSE   # CT_ASSETS_CONFIG names the columns and the suite

It imports dagster and great_expectations (as a Dagster project's script would), reads the file with
polars, validates it with ct_assets' own Great Expectations suite (core/ingest/quality.py, the same
expectations the ingest run applies), and appends the rows to a DuckDB table in one transaction. It does
none of the rest of an ingest run (no ledger of files, no label events, no predictions, no archive).
Time the whole process from outside; bench/process_bench.py does.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dagster  # noqa: F401  (paid by any script in a Dagster project)
import duckdb
import great_expectations  # noqa: F401
import polars as pl

from ct_assets.common.clock import utc_now
from ct_assets.config import load_settings
from ct_assets.core.ingest.quality import first_failure, validate_delta


def main(path: Path, warehouse: Path) -> int:
    settings = load_settings()
    frame = pl.read_parquet(path)
    failed = first_failure(validate_delta(frame, settings, utc_now()))
    if failed is not None:
        print(f"rejected: {failed.describe()}", file=sys.stderr)
        return 1
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("BEGIN")
        con.execute("CREATE TABLE IF NOT EXISTS rows AS SELECT * FROM frame LIMIT 0")
        con.execute("INSERT INTO rows SELECT * FROM frame")
        con.execute("COMMIT")
    finally:
        con.close()
    print(f"appended {frame.height} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
