"""The embedded warehouse is never taken for a DuckLake, whatever its file is called (the lake is
attached as `wh`; a file named wh.duckdb is still a DuckDB file, keys and ON CONFLICT included)."""

from pathlib import Path

import duckdb

from ct_assets.store.sql import fetch_value, is_lake, set_meta


def test_a_file_named_like_the_lake_alias_is_not_a_lake(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    assert not is_lake(con)
    set_meta(con, "k", "1")
    set_meta(con, "k", "2")
    set_meta(con, "k", "3", keep=True)
    assert fetch_value(con, "SELECT value FROM meta WHERE key = 'k'") == "2"
