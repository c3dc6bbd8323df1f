"""The label of a row as known now: the one place that reads it for predictions and shadow evaluations.

Today a row's label is the one it landed with (`raw_deltas.<label>`). When labels can arrive after
their rows, this is the one function to change.
"""

from __future__ import annotations

from ct_assets.config import Settings
from ct_assets.store.schema import row_key
from ct_assets.store.sql import quote


def labels_now_sql(settings: Settings, since_batch: int = 0) -> str:
    """A SQL relation (`_batch_id`, row key, label) holding every row of batches from `since_batch` on,
    with its label as known now (null: not labelled yet)."""
    key = quote(row_key(settings)[0])
    label = quote(settings.columns.label)
    return f"SELECT _batch_id, {key}, {label} FROM raw_deltas WHERE _batch_id >= {int(since_batch)}"
