"""Recording the training data set of a CT run: the current window against the golden set, stored
once per content hash, with what its checks look at (golden overlap, exploration share).

What the `training_dataset` asset runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ct_assets.common.clock import utc_now
from ct_assets.config.settings import Settings
from ct_assets.core.datasets.overlap import GoldenOverlap, exploration_share, golden_overlap
from ct_assets.core.datasets.training import DatasetInfo, define_training_dataset, record_dataset
from ct_assets.core.monitoring.evidence import held_batches
from ct_assets.errors import DataError
from ct_assets.store.sql import fetch_value
from ct_assets.store.warehouse import connect_writer


@dataclass(frozen=True)
class TrainingSelection:
    """A recorded training data set and what its checks look at."""

    dataset: DatasetInfo
    overlap: GoldenOverlap  # golden rows found in it (by key, by content): must be none
    exploration: float | None  # share of exploration rows in the train split (None: no flag column)


def record_training_dataset(s: Settings, golden_hash: str, *, run_id: str) -> TrainingSelection:
    """Define the current training window (held-back batches left out) against the golden set
    `golden_hash`, record it (once per content hash), and measure what its checks need."""
    now = utc_now()
    with connect_writer(s) as con:
        known = fetch_value(con, "SELECT count(*) FROM golden_versions WHERE golden_hash = ?", [golden_hash])
        if not known:
            raise DataError(f"golden set {golden_hash} is not in the warehouse")
        ds = define_training_dataset(con, s, golden_hash, held_batches(con))
        record_dataset(con, ds, run_id=run_id, now=now)
        return TrainingSelection(ds, golden_overlap(con, s, ds), exploration_share(con, s, ds))
