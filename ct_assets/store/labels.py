"""A row's effective label: the label it landed with, else the label attached to it later (a row in
`label_events` with status 'attached'), as SQL every reader of labelled rows shares.

Label events are written only by the ingest of a batch (a row file or a label file), inside that batch's
transaction, and each carries that batch's id. So "the labels known when batch B was the newest" is
exactly the attached events with batch_id <= B: a training data set's newest batch is also its label
watermark, and a model's labels can be read back at any later time.

A row's hash in a data set covers its label: a row that landed labelled keeps its stored `_row_hash`
(so every data set recorded before late labels existed keeps its hash), a row labelled later hashes as
md5(_row_hash, label) (`late_hash_sql`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ct_assets.config.settings import Settings
from ct_assets.store.hashing import NULL_MARK, SEPARATOR
from ct_assets.store.sql import quote

_MASK64 = (1 << 64) - 1
ATTACHED = "attached"
STATUSES = ("attached", "pending", "conflict", "duplicate")


def attached_sql(through: str | None = None, excluded: Sequence[int] = ()) -> str:
    """The attached labels (row_key, label, batch_id), of batches up to `through` (a SQL value, e.g.
    `$max_batch`) when given, and not brought by a label file among the `excluded` batches (a label file
    a person excluded: `ct-assets batch exclude`)."""
    bound = f" AND batch_id <= {through}" if through else ""
    if excluded:
        bound += f" AND label_batch_id NOT IN ({', '.join(str(int(b)) for b in excluded)})"
    return (
        "SELECT row_key AS _lk, label AS _late_label, batch_id AS _label_batch FROM label_events "
        f"WHERE status = '{ATTACHED}'{bound}"
    )


def join_sql(
    settings: Settings, alias: str = "d", through: str | None = None, excluded: Sequence[int] = ()
) -> str:
    """` LEFT JOIN (attached labels) e ON <alias>.<row id> = e._lk`, or "" when rows have no id (late
    labels need a row id to attach to)."""
    rid = settings.columns.row_id
    if not rid:
        return ""
    return f" LEFT JOIN ({attached_sql(through, excluded)}) e ON {alias}.{quote(rid)} = e._lk"


def late_label_sql(settings: Settings, alias: str = "d") -> str:
    """The attached label of a row that landed without one (NULL otherwise); needs `join_sql`."""
    if not settings.columns.row_id:
        return "NULL"
    return f"CASE WHEN {alias}.{quote(settings.columns.label)} IS NULL THEN e._late_label END"


def label_sql(settings: Settings, alias: str = "d") -> str:
    """The effective label; needs `join_sql` in the same FROM."""
    own = f"{alias}.{quote(settings.columns.label)}"
    return f"coalesce({own}, e._late_label)" if settings.columns.row_id else own


def late_hash_sql(row_hash: str, label: str) -> str:
    """The hash of a row labelled after it landed: md5 of its stored row hash and its label."""
    return (
        f"CAST(md5_number(concat_ws({SEPARATOR}, 'late', CAST({row_hash} AS VARCHAR), "
        f"coalesce(CAST({label} AS VARCHAR), {NULL_MARK}))) & {_MASK64} AS UBIGINT)"
    )


def hash_sql(settings: Settings, alias: str = "d", row_hash: str | None = None) -> str:
    """A row's hash in a data set (see the module docstring); `row_hash` defaults to the stored one."""
    stored = row_hash or f"{alias}._row_hash"
    if not settings.columns.row_id:
        return stored
    late = late_label_sql(settings, alias)
    return f"(CASE WHEN {late} IS NULL THEN {stored} ELSE {late_hash_sql(stored, late)} END)"
