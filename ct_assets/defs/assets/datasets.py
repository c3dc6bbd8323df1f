"""Datasets: the frozen golden set and the freshness-checked training data set."""

from collections.abc import Iterator

import dagster as dg

from ct_assets.common.clock import utc_now
from ct_assets.config.settings import Settings
from ct_assets.core.datasets.golden import ensure_golden
from ct_assets.core.datasets.record import TrainingSelection, record_training_dataset
from ct_assets.core.datasets.training import DatasetInfo
from ct_assets.defs.assets.ingestion import raw_deltas
from ct_assets.defs.budget import seconds_left, tag_run_worker
from ct_assets.defs.constants import DATASETS
from ct_assets.defs.metadata import table
from ct_assets.defs.resources import SettingsResource
from ct_assets.errors import DataError


class GoldenConfig(dg.Config):
    """Rebuilding the golden set is an explicit act with a reason; otherwise the frozen one is kept."""

    rebuild: bool = False
    reason: str = ""


@dg.asset(group_name=DATASETS, deps=[raw_deltas], kinds={"duckdb"})
def golden_dataset(
    context: dg.AssetExecutionContext, config: GoldenConfig, settings: SettingsResource
) -> dg.Output:
    """Evaluation rows representative of the history the training window covers, drawn from the golden
    reserve (a stable hash bucket of row keys that no training set ever takes), stratified by period and
    slice, identified by its content hash. Refreshed by each CT run when the reserve moved by a tenth of
    its rows (a ledger row says what changed); rebuilt on request."""
    tag_run_worker(context)
    golden, built = ensure_golden(
        settings.load(), rebuild=config.rebuild, reason=config.reason, run_id=context.run_id
    )
    slice_rows = [
        {"slice": f"{col}={v}", "rows": n}
        for col, counts in golden.slice_counts.items()
        for v, n in counts.items()
    ]
    return dg.Output(
        {"golden_hash": golden.golden_hash, "rows": golden.rows},
        data_version=dg.DataVersion(golden.golden_hash),
        metadata={
            "golden_hash": golden.golden_hash,
            "dagster/row_count": golden.rows,
            "state": "refreshed"
            if built and golden.changes.get("previous")
            else ("built" if built else "kept"),
            "rows_added": golden.changes.get("rows_added", 0),
            "rows_removed": golden.changes.get("rows_removed", 0),
            "built_at": str(golden.created_at),
            "from_batches_up_to": golden.max_batch_id,
            "slices": table(slice_rows, ["slice", "rows"]),
        },
    )


TRAINING_CHECKS = {
    "training_dataset_fresh": "The newest row in the training window is younger than [freshness] max_data_lag_hours.",
    "training_dataset_excludes_golden": "No golden row is in the training data set, by key or by content (event "
    "time and features, under another id), checked on the materialized rows. The selection leaves the golden "
    "reserve and its content out, so this fails only if the selection is wrong. Blocking: training stops.",
    "training_dataset_exploration_share": "Rows collected under the randomised policy are at least [dataset] "
    "exploration_target of the training rows (a warning: too few of them feeds the model its own decisions).",
}


@dg.asset(
    group_name=DATASETS,
    deps=[raw_deltas],
    kinds={"duckdb"},
    check_specs=[
        dg.AssetCheckSpec(
            n, asset="training_dataset", description=d, blocking=n == "training_dataset_excludes_golden"
        )
        for n, d in TRAINING_CHECKS.items()
    ],
)
def training_dataset(
    context: dg.AssetExecutionContext, settings: SettingsResource, golden_dataset: dict
) -> Iterator:
    """The training window of labelled rows (golden rows excluded), split in time order into train and
    a recent holdout. A recorded selection over the append-only warehouse; its content hash is its
    DataVersion."""
    tag_run_worker(context)
    s = settings.load()
    if not golden_dataset:
        raise DataError("the golden set has not been built yet: materialize golden_dataset first")
    seconds_left(context, s)
    sel = record_training_dataset(s, golden_dataset["golden_hash"], run_id=context.run_id)
    yield dg.Output(
        sel.dataset.to_json(),
        data_version=dg.DataVersion(sel.dataset.dataset_hash),
        metadata=_dataset_metadata(sel),
    )
    yield _fresh_check(sel.dataset, s)
    yield _excludes_golden_check(sel)
    yield _exploration_check(sel, s)


def _dataset_metadata(sel: TrainingSelection) -> dict:
    ds, explored = sel.dataset, sel.exploration
    return {
        "dataset_hash": ds.dataset_hash,
        "dagster/row_count": ds.n_train + ds.n_holdout,
        "rows_train": ds.n_train,
        "rows_holdout": ds.n_holdout,
        "rows_unlabelled_skipped": ds.rows_unlabelled,
        "rows_late_labelled": ds.rows_late_labelled,
        "labels_through_batch": ds.max_batch_id,
        "rows_left_out_golden_reserve": ds.rows_reserved,
        "rows_left_out_same_content_as_reserve": ds.rows_same_content,
        "rows_left_out_held_back": ds.rows_held_back,
        "held_back_batches": ", ".join(map(str, ds.excluded_batches)) or "none",
        "window_start": str(ds.window_start),
        "holdout_starts_at": str(ds.holdout_start_time),
        "newest_event_time": str(ds.newest_event_time),
        "up_to_batch": ds.max_batch_id,
        "golden_hash": ds.golden_hash,
        "train_hash": ds.train_hash,
        "holdout_hash": ds.holdout_hash,
        "exploration_share": "no exploration column configured" if explored is None else round(explored, 4),
    }


def _fresh_check(ds: DatasetInfo, s: Settings) -> dg.AssetCheckResult:
    age_h = (utc_now() - ds.newest_event_time).total_seconds() / 3600
    limit = s.freshness.max_data_lag_hours
    return dg.AssetCheckResult(
        check_name="training_dataset_fresh",
        passed=age_h <= limit,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"newest training row is {age_h:.2f} h old; limit {limit} h",
        metadata={
            "newest_event_time": str(ds.newest_event_time),
            "age_hours": round(age_h, 3),
            "limit_hours": limit,
        },
    )


def _excludes_golden_check(sel: TrainingSelection) -> dg.AssetCheckResult:
    ds, overlap = sel.dataset, sel.overlap
    leaked = overlap.by_key + overlap.by_content
    return dg.AssetCheckResult(
        check_name="training_dataset_excludes_golden",
        passed=leaked == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"no golden row among the {ds.n_train + ds.n_holdout} training rows (by key and by content)"
            if leaked == 0
            else f"{overlap.by_key} golden row(s) by key and {overlap.by_content} by content are in the "
            f"training data set (e.g. ids {', '.join(overlap.examples) or 'n/a'})"
        ),
        metadata={
            "golden_hash": ds.golden_hash,
            "overlap_by_key": overlap.by_key,
            "overlap_by_content": overlap.by_content,
            "training_rows": ds.n_train + ds.n_holdout,
        },
    )


def _exploration_check(sel: TrainingSelection, s: Settings) -> dg.AssetCheckResult:
    explored, target = sel.exploration, s.dataset.exploration_target
    return dg.AssetCheckResult(
        check_name="training_dataset_exploration_share",
        passed=explored is None or explored >= target,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "no exploration column configured ([columns] exploration)"
            if explored is None
            else f"exploration rows are {explored:.2%} of the training rows; target {target:.2%}"
        ),
        metadata={"exploration_share": -1.0 if explored is None else explored, "target": target},
    )
