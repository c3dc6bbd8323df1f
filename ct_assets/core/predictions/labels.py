"""The label of a row as known now: the one place that reads it for predictions and shadow evaluations.

A row's label is the one it landed with, else the label attached to it later (store.labels: late labels
by row id), as the champion's monitoring reads it.
"""

from __future__ import annotations

from ct_assets.config import Settings
from ct_assets.store import labels
from ct_assets.store.columns import row_key
from ct_assets.store.sql import quote


def labels_now_sql(settings: Settings, since_batch: int = 0) -> str:
    """A SQL relation (`_batch_id`, row key, label) holding every row of batches from `since_batch` on,
    with its label as known now (null: not labelled yet)."""
    key = quote(row_key(settings)[0])
    label = quote(settings.columns.label)
    return (
        f"SELECT d._batch_id, d.{key}, {labels.label_sql(settings)} AS {label} "
        f"FROM raw_deltas d{labels.join_sql(settings)} WHERE d._batch_id >= {int(since_batch)}"
    )
