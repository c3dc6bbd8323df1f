"""Schema evolution: the warehouse follows the config's feature list, and every batch keeps the columns it
had.

A feature added to the config after data exists becomes a new column (ALTER TABLE ... ADD COLUMN, on
`raw_deltas` and `golden_rows`) the first time a writer opens the warehouse under that config (or at
`ct-assets init`); older rows hold NULL in it. A feature removed from the config keeps its column, simply
unused (models trained with it still read it). What cannot follow is refused before anything runs, in one
line naming the column and what to do: a new *required* feature when rows exist (they have no value
for it), a feature whose kind (numeric/categorical, DOUBLE/VARCHAR) changed, and a change of the
event time, row id or label column (renamed or retyped). Every change is a row of `schema_changes`.

Row hashes stay stable for old rows because each batch is hashed over the columns it was stored with,
recorded in `ingest_log.row_columns` (and `content_columns`, the event time and features its content
hash covers): `batch_hash_sql` recomputes a hash batch by batch from those lists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb

from ct_assets.config.settings import Settings
from ct_assets.errors import ConfigError
from ct_assets.store.columns import raw_delta_columns
from ct_assets.store.hashing import row_hash_sql
from ct_assets.store.sql import fetch_value, next_id, quote, set_meta

ROLES = ("event_time", "row_id", "label", "exploration")
KIND_OF_TYPE = {"DOUBLE": "numeric", "VARCHAR": "categorical"}


def user_columns(con: duckdb.DuckDBPyConnection, table: str = "raw_deltas") -> list[tuple[str, str]]:
    """(name, DuckDB type) of a rows table's user columns (not the warehouse's own `_` columns), in
    table order."""
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return [(n, t) for n, t in rows if not n.startswith("_")]


def config_roles(settings: Settings) -> dict[str, str | None]:
    c = settings.columns
    return {"event_time": c.event_time, "row_id": c.row_id, "label": c.label, "exploration": c.exploration}


def _meta(con: duckdb.DuckDBPyConnection, key: str) -> Any:
    """A JSON value kept in the meta table (None when absent): `roles` a dict, `features` a list."""
    text = fetch_value(con, "SELECT value FROM meta WHERE key = ?", [key])
    return json.loads(text) if text else None


def _set_meta(con: duckdb.DuckDBPyConnection, key: str, value: object) -> None:
    set_meta(con, key, json.dumps(value))


def adopt(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """On creation or upgrade (schema 5): remember the columns' roles, and record for every batch stored
    before the columns it was hashed over, which are the table's columns as they are before any change
    (a schema-4 warehouse matched its config exactly)."""
    columns = [n for n, _ in user_columns(con)]
    roles = _meta(con, "roles")
    if roles is None:
        roles = config_roles(settings)
        if all(v is None or v in columns for v in roles.values()):  # else reconcile refuses the config
            _set_meta(con, "roles", roles)
            _set_meta(con, "features", [n for n in columns if n not in set(roles.values())])
    others = {roles.get("row_id"), roles.get("label"), roles.get("exploration")}
    content = [n for n in columns if n not in others]
    con.execute(
        "UPDATE ingest_log SET row_columns = ?, content_columns = ? "
        "WHERE status = 'ingested' AND batch_id IS NOT NULL AND row_columns IS NULL",
        [json.dumps(columns), json.dumps(content)],
    )


def reconcile(con: duckdb.DuckDBPyConnection, settings: Settings, *, write: bool) -> list[str]:
    """Refuse a config the warehouse cannot follow (ConfigError, one line); with `write`, add the columns
    of new optional features and record the change. Returns the columns added."""
    have = dict(user_columns(con))
    stored = _meta(con, "roles") or {}
    where = f"config {settings.source}"
    fix = "or point [paths] warehouse at a new file"
    for role in ("event_time", "row_id", "label"):
        name, old = config_roles(settings)[role], stored.get(role, config_roles(settings)[role])
        if name != old:
            raise ConfigError(
                f"{where}: [columns] {role} is {name!r} but the warehouse's {role} column is {old!r}: a "
                f"{role} column cannot be renamed; set {role} = {json.dumps(old or '')} again (rename the "
                f"column in your files instead), {fix}"
            )
    want = dict(raw_delta_columns(settings))
    role_columns = {v: k for k, v in stored.items() if v}
    rows: int | None = None
    added: list[tuple[str, str]] = []
    for name, sql_type in want.items():
        feature = next((f for f in settings.features if f.name == name), None)
        if name in have:
            if have[name] != sql_type:
                raise ConfigError(_type_change(where, name, feature, have[name], sql_type, fix))
            if feature is not None and name in role_columns:
                raise ConfigError(
                    f"{where}: feature {name!r} is the warehouse's {role_columns[name]} column; remove it "
                    f"from [features], {fix}"
                )
            continue
        if feature is None and name != settings.columns.exploration:
            raise ConfigError(f"{where}: the warehouse has no column {name!r}; {fix}")
        if rows is None:
            rows = int(fetch_value(con, "SELECT count(*) FROM raw_deltas") or 0)
        if rows and (feature is None or feature.required):
            what = "the exploration flag" if feature is None else "required feature"
            raise ConfigError(
                f"{where}: new {what} {name!r} cannot be added: the warehouse already holds {rows} rows "
                f"without it; add it with required = false (older rows then hold nulls), {fix}"
                if feature is not None
                else f"{where}: {what} {name!r} cannot be added: the warehouse already holds {rows} rows "
                f"without it; leave [columns] exploration empty, {fix}"
            )
        added.append((name, sql_type))
    if write:
        _apply(con, settings, added, stored)
    return [n for n, _ in added]


def _type_change(where: str, name: str, feature, old: str, new: str, fix: str) -> str:
    if feature is not None and old in KIND_OF_TYPE:
        return (
            f"{where}: feature {name!r} is {feature.kind} in the config but {KIND_OF_TYPE[old]} ({old}) in the "
            f"warehouse: a feature's kind cannot change; add it under a new name and remove {name!r} from "
            f"[features], {fix}"
        )
    return (
        f"{where}: column {name!r} is stored as {old} in the warehouse but the config makes it {new} "
        f"(label_classes, row_id_type or kind changed): a column's type cannot change; restore it, {fix}"
    )


def _apply(
    con: duckdb.DuckDBPyConnection, settings: Settings, added: list[tuple[str, str]], stored: dict
) -> None:
    """Add the columns, remember roles and the feature list, and record every change (one transaction)."""
    before = _meta(con, "features")
    now_features = settings.feature_names
    changes: list[tuple[str, str, str]] = [("column_added", n, t) for n, t in added]
    if before is not None and before != now_features:
        changes += [("feature_removed", n, "") for n in before if n not in now_features]
        changes += [
            ("feature_added", n, "") for n in now_features if n not in before and n not in dict(added)
        ]
    roles = {k: stored.get(k) for k in ROLES} if stored else None
    new_roles = {**(roles or {}), **{k: v for k, v in config_roles(settings).items() if v}}
    if not changes and roles == new_roles and before == now_features:
        return
    con.execute("BEGIN TRANSACTION")
    try:
        for name, sql_type in added:
            for table in ("raw_deltas", "golden_rows"):
                con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {quote(name)} {sql_type}")
        first = next_id(con, "schema_changes", "change_id", len(changes))
        for i, (change, name, sql_type) in enumerate(changes):
            con.execute(
                "INSERT INTO schema_changes VALUES (?, now(), ?, ?, ?, ?)",
                [first + i, change, name, sql_type or None, settings.source],
            )
        _set_meta(con, "roles", {k: new_roles.get(k) for k in ROLES})
        _set_meta(con, "features", now_features)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def added_columns(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The columns the warehouse gained after it held rows (schema_changes)."""
    return {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM schema_changes WHERE change = 'column_added'"
        ).fetchall()
    }


def batch_columns(con: duckdb.DuckDBPyConnection) -> dict[int, tuple[tuple[str, ...], tuple[str, ...]]]:
    """For every row batch: (the columns its row hashes cover, the columns its content hashes cover)."""
    out = {}
    for batch_id, row_cols, content_cols in con.execute(
        "SELECT batch_id, row_columns, content_columns FROM ingest_log WHERE status = 'ingested' "
        "AND batch_id IS NOT NULL AND coalesce(kind, 'rows') = 'rows' AND row_columns IS NOT NULL"
    ).fetchall():
        out[int(batch_id)] = (tuple(json.loads(row_cols)), tuple(json.loads(content_cols)))
    return out


def batch_hash_sql(con: duckdb.DuckDBPyConnection, kind: str, alias: str = "", *, fast: bool = False) -> str:
    """A SQL expression hashing each row over the columns its batch was stored with: `kind` "row" (the
    stored _row_hash's columns) or "content" (_content_hash's). MD5 as stored (store.hashing), or with
    `fast` DuckDB's hash() (only to compare within one query)."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for batch_id, (row_cols, content_cols) in batch_columns(con).items():
        groups.setdefault(row_cols if kind == "row" else content_cols, []).append(batch_id)
    if not groups:
        return "CAST(NULL AS UBIGINT)"
    prefix = f"{alias}." if alias else ""
    ordered = sorted(groups.items(), key=lambda kv: -len(kv[1]))

    def expr(cols: Sequence[str]) -> str:
        if fast:
            return "hash(" + ", ".join(f"{prefix}{quote(c)}" for c in cols) + ")"
        return row_hash_sql(cols, alias)

    if len(ordered) == 1:
        return expr(ordered[0][0])
    whens = " ".join(
        f"WHEN {prefix}_batch_id IN ({', '.join(map(str, sorted(ids)))}) THEN {expr(cols)}"
        for cols, ids in ordered[1:]
    )
    return f"(CASE {whens} ELSE {expr(ordered[0][0])} END)"


def batches_lacking(con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> list[int]:
    """Row batches stored without one of these columns (their rows hold NULL there because the column
    did not exist, or was no longer configured, when they landed)."""
    wanted = set(names)
    return sorted(b for b, (cols, _) in batch_columns(con).items() if not wanted <= set(cols))
