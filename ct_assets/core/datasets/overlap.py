"""What a recorded training data set holds besides its rows: golden rows that leaked in, exploration share."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from ct_assets.config.settings import Settings
from ct_assets.core.datasets.keys import key_column
from ct_assets.core.datasets.training import DatasetInfo, selection_sql
from ct_assets.store.evolution import batch_hash_sql
from ct_assets.store.sql import fetch_value, quote


@dataclass(frozen=True)
class GoldenOverlap:
    """Golden rows found in a training data set: by key, and by content (the same values under another id)."""

    by_key: int
    by_content: int
    examples: list[str]


def golden_overlap(con: duckdb.DuckDBPyConnection, settings: Settings, ds: DatasetInfo) -> GoldenOverlap:
    """Count the training data set's rows (train and holdout, as training reads them) that are golden rows:
    the same key, or the same content (event time and features, each row over the features its batch was
    stored with) under another id, computed here from the values themselves (not from the stored content
    hashes the selection uses), so that a wrong selection is caught."""
    cols = settings.columns
    key = key_column(settings)

    def content_hash(alias: str) -> str:  # DuckDB's fast hash: only compared within this one query
        return batch_hash_sql(con, "content", alias, fast=True)

    et = quote(cols.event_time)
    params = {**ds.params(), "golden": ds.golden_hash}
    # Equal content means an equal event time, so only rows at a golden row's event time are hashed.
    # Each count is its own query: a CTE used twice in one query is materialized, all its columns.
    matches = f"""WITH sel AS ({selection_sql(settings, ds.selection, ds.excluded_batches)}),
                       g AS (SELECT * FROM golden_rows WHERE _golden_hash = $golden),
                       gh AS (SELECT DISTINCT g.{et} AS t, {content_hash("g")} AS h FROM g),
                       cand AS (SELECT sel.* FROM sel SEMI JOIN (SELECT DISTINCT t FROM gh) ge ON sel.{et} = ge.t)"""
    by_key = fetch_value(con, f"{matches} SELECT count(*) FROM sel JOIN g ON sel.{key} = g.{key}", params)
    by_content = fetch_value(
        con,
        f"{matches} SELECT count(*) FROM cand JOIN gh ON cand.{et} = gh.t AND {content_hash('cand')} = gh.h",
        params,
    )
    row = (int(by_key or 0), int(by_content or 0))
    examples: list[str] = []
    if row[0] or row[1]:
        examples = [
            str(r[0])
            for r in con.execute(
                f"""{matches}
                SELECT sel.{key} FROM sel WHERE sel.{key} IN (SELECT {key} FROM g)
                   OR {content_hash("sel")} IN (SELECT h FROM gh) LIMIT 5""",
                params,
            ).fetchall()
        ]
    return GoldenOverlap(int(row[0]), int(row[1]), examples)


def exploration_share(con: duckdb.DuckDBPyConnection, settings: Settings, ds: DatasetInfo) -> float | None:
    """Share of the training split's rows flagged as exploration (None when no flag column is configured)."""
    flag = settings.columns.exploration
    if not flag:
        return None
    et = quote(settings.columns.event_time)
    value = fetch_value(
        con,
        f"SELECT avg(CAST({quote(flag)} AS DOUBLE)) FROM ({selection_sql(settings, ds.selection, ds.excluded_batches)}) "
        f"WHERE {et} < $boundary",
        {**ds.params(), "boundary": ds.holdout_start_time},
    )
    return float(value or 0.0)
