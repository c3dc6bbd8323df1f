"""Content hashes: per row (in DuckDB), per data set (order independent), per file."""

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from ct_assets.store.hashing import AGGREGATE_SQL, combine, data_hash, file_sha256, key_hash_sql, row_hash_sql

COLUMNS = ["t", "id", "x", "c", "y"]
ROW = "TIMESTAMP '2024-05-01 12:30:00', 7, 1.25, 'north', 1"


def hash_of(con: duckdb.DuckDBPyConnection, values_sql: str, columns: list[str] = COLUMNS) -> int:
    """The row hash of one row given as SQL literals, bound to `columns` in order."""
    select = ", ".join(f"{v} AS {c}" for v, c in zip(split(values_sql), columns, strict=True))
    rows = con.execute(f"SELECT {row_hash_sql(columns)} FROM (SELECT {select})").fetchall()
    return int(rows[0][0])


def split(values_sql: str) -> list[str]:
    return [v.strip() for v in values_sql.split(",")]


def md5_64(text: str) -> int:
    """The documented definition: the low 64 bits of the MD5 of the row's canonical text."""
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "little")


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect()
    yield c
    c.close()


def test_row_hash_is_md5_of_the_canonical_text(con: duckdb.DuckDBPyConnection) -> None:
    assert hash_of(con, ROW) == md5_64("2024-05-01 12:30:00\x1f7\x1f1.25\x1fnorth\x1f1")
    assert hash_of(con, "1, 'x', NULL", ["a", "b", "c"]) == md5_64("1\x1fx\x1f\x1e")
    # pinned: a change of the scheme silently re-versions every stored data set and golden set
    assert hash_of(con, "1, 'x', NULL::DOUBLE", ["a", "b", "c"]) == 13627885589907085453


def test_row_hash_is_stable_across_connections_and_files(
    con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    first = hash_of(con, ROW)
    assert hash_of(con, ROW) == first
    with duckdb.connect(str(tmp_path / "w.duckdb")) as other:
        other.execute(
            "CREATE TABLE r (t TIMESTAMP, id BIGINT, x DOUBLE, c VARCHAR, y BIGINT); "
            f"INSERT INTO r VALUES ({ROW})"
        )
        stored = other.execute(f"SELECT {row_hash_sql(COLUMNS)} FROM r").fetchall()[0][0]
    assert stored == first
    assert 0 <= first < 2**64


@pytest.mark.parametrize(
    "changed",
    [
        "TIMESTAMP '2024-05-01 12:30:00.000001', 7, 1.25, 'north', 1",
        "TIMESTAMP '2024-05-01 12:30:00', 8, 1.25, 'north', 1",
        "TIMESTAMP '2024-05-01 12:30:00', 7, 1.2500001, 'north', 1",
        "TIMESTAMP '2024-05-01 12:30:00', 7, 1.25, 'North', 1",
        "TIMESTAMP '2024-05-01 12:30:00', 7, 1.25, 'north', 0",
        "TIMESTAMP '2024-05-01 12:30:00', 7, 1.25, NULL, 1",
        "NULL, 7, 1.25, 'north', 1",
    ],
    ids=["time", "id", "number", "text case", "label", "null text", "null time"],
)
def test_row_hash_is_sensitive_to_each_value(con: duckdb.DuckDBPyConnection, changed: str) -> None:
    assert hash_of(con, changed) != hash_of(con, ROW)


def test_row_hash_tells_null_positions_and_boundaries_apart(con: duckdb.DuckDBPyConnection) -> None:
    cols = ["a", "b"]
    hashes = {
        "null first": hash_of(con, "NULL, 'a'", cols),
        "null second": hash_of(con, "'a', NULL", cols),
        "both null": hash_of(con, "NULL, NULL", cols),
        "empty second": hash_of(con, "'a', ''", cols),
        "text NULL": hash_of(con, "'a', 'NULL'", cols),
        "ab|c": hash_of(con, "'ab', 'c'", cols),
        "a|bc": hash_of(con, "'a', 'bc'", cols),
    }
    assert len(set(hashes.values())) == len(hashes), hashes


def test_row_hash_with_alias_and_awkward_names(con: duckdb.DuckDBPyConnection) -> None:
    con.execute('CREATE TABLE t ("my col" INTEGER, "say ""hi""" VARCHAR)')
    con.execute("INSERT INTO t VALUES (1, 'x')")
    cols = ["my col", 'say "hi"']
    plain = con.execute(f"SELECT {row_hash_sql(cols)} FROM t").fetchall()[0][0]
    aliased = con.execute(f"SELECT {row_hash_sql(cols, 'd')} FROM t d").fetchall()[0][0]
    assert plain == aliased == md5_64("1\x1fx")


def test_key_hash_uses_the_id_alone_when_there_is_one(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE TABLE t (id BIGINT, v VARCHAR)")
    con.execute("INSERT INTO t VALUES (5, 'a'), (5, 'b'), (6, 'a')")
    by_id = [r[0] for r in con.execute(f"SELECT {key_hash_sql('id', ['id', 'v'])} FROM t").fetchall()]
    assert by_id[0] == by_id[1] != by_id[2]
    assert by_id[0] == md5_64("5")
    by_content = [r[0] for r in con.execute(f"SELECT {key_hash_sql(None, ['id', 'v'])} FROM t").fetchall()]
    assert len(set(by_content)) == 3
    assert by_content == [r[0] for r in con.execute(f"SELECT {row_hash_sql(['id', 'v'])} FROM t").fetchall()]


def _set_hash(con: duckdb.DuckDBPyConnection, rows: list[tuple[int, str]]) -> str:
    con.execute("CREATE OR REPLACE TABLE s (id BIGINT, v VARCHAR)")
    if rows:
        con.executemany("INSERT INTO s VALUES (?, ?)", rows)
    sql = f"SELECT {AGGREGATE_SQL} FROM (SELECT {row_hash_sql(['id', 'v'])} AS _row_hash FROM s)"
    return data_hash(*con.execute(sql).fetchall()[0])


def test_data_hash_is_order_independent_and_content_sensitive(con: duckdb.DuckDBPyConnection) -> None:
    rows = [(i, f"v{i % 7}") for i in range(200)]
    base = _set_hash(con, rows)
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    assert _set_hash(con, shuffled) == base
    assert _set_hash(con, list(reversed(rows))) == base

    changed = rows[:]
    changed[57] = (57, "other")
    assert _set_hash(con, changed) != base
    assert _set_hash(con, rows[:-1]) != base
    assert _set_hash(con, [*rows, rows[0]]) != base  # a multiset: a repeated row counts
    assert _set_hash(con, []) == data_hash(0, 0, 0) != base


def test_data_hash_reduces_sums_modulo_2_64() -> None:
    assert data_hash(3, 2**64 + 5, 9) == data_hash(3, 5, 9)
    assert data_hash(3, 5, 9) != data_hash(3, 6, 9)
    assert data_hash(3, 5, 9) != data_hash(3, 5, 8)
    assert data_hash(3, 5, 9) != data_hash(4, 5, 9)
    assert len(data_hash(1, 2, 3)) == 16


def test_combine_names_its_parts() -> None:
    assert combine(train="a", holdout="b") == combine(holdout="b", train="a")
    assert combine(train="a", holdout="b") != combine(train="b", holdout="a")
    assert combine(train="a", holdout="b") != combine(train="a", holdout="c")
    assert combine(train="a", holdout="b") != combine(train="a", holdout="b", golden="g")


def test_file_sha256(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 1000
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(path, chunk=1000) == hashlib.sha256(data).hexdigest()
    path.write_bytes(data[:-1] + b"\x00")
    assert file_sha256(path) != hashlib.sha256(data).hexdigest()
