"""Content hashes: per row (stable MD5 of the canonical text of its values), per file, per data set.

A data set's hash is built from the count, the sum and the XOR of its rows' 64-bit hashes: it covers
every value of every row, does not depend on row order, and is a cheap column aggregate in DuckDB.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from ct_assets.store.sql import quote

_MASK64 = (1 << 64) - 1
NULL_MARK = "chr(30)"  # stands for NULL, so that (NULL, 'a') and ('a', NULL) hash apart
SEPARATOR = "chr(31)"


def row_hash_sql(columns: Sequence[str], alias: str = "") -> str:
    """A DuckDB expression giving a stable UBIGINT hash of a row's values in `columns`."""
    prefix = f"{alias}." if alias else ""
    parts = ", ".join(f"coalesce(CAST({prefix}{quote(c)} AS VARCHAR), {NULL_MARK})" for c in columns)
    return f"CAST(md5_number(concat_ws({SEPARATOR}, {parts})) & {_MASK64} AS UBIGINT)"


def key_hash_sql(key_column: str | None, columns: Sequence[str], alias: str = "") -> str:
    """A stable UBIGINT hash of a row's key: its id when there is one, else its content."""
    if key_column:
        prefix = f"{alias}." if alias else ""
        return f"CAST(md5_number(CAST({prefix}{quote(key_column)} AS VARCHAR)) & {_MASK64} AS UBIGINT)"
    return row_hash_sql(columns, alias)


AGGREGATE_SQL = "count(*), coalesce(sum(_row_hash), 0), coalesce(bit_xor(_row_hash), 0)"


def data_hash(count: int, total: int, xor: int) -> str:
    """Order-independent hash of a multiset of rows, from AGGREGATE_SQL's three values."""
    text = f"ct-data-v1|{int(count)}:{int(total) & _MASK64}:{int(xor) & _MASK64}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def combine(**parts: str) -> str:
    """One hash over named part hashes (for example train and holdout)."""
    text = "|".join(f"{k}={v}" for k, v in sorted(parts.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
