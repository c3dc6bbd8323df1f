"""Issue 13 through the assets: the ingest run's metadata counts the labels each file attached (and their
delay), the training data set names its late-labelled rows and label watermark, the champion judges a
batch once its late labels arrive; after a feature is added, the validation report says on which rows both
models were compared, and a frozen golden set from before the feature is shown, not compared."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core.ingest.landing import ready_files
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.config import default_tables, small
from ct_assets_tests.helpers.runs import check_evaluations, metadata, records, run

pytestmark = pytest.mark.slow


def hold_labels(settings: Settings) -> pl.DataFrame:
    """Null the labels of every waiting delta; return them as one label file's rows."""
    held = []
    for f in ready_files(settings.paths.landing):
        frame = pl.read_parquet(f.path)
        held.append(frame.filter(pl.col("label").is_not_null()).select("row_id", "label"))
        frame.with_columns(pl.lit(None, dtype=pl.Int64).alias("label")).write_parquet(f.path)
    return pl.concat(held)


def test_late_labels_through_the_ingest_and_ct_runs(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    settings = make_settings(**small())
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=3, rows=3000, seed=1))
    assert run(instance, "ingest_job").success
    assert run(instance, "ct_job").success  # v0001 on batches 1-3
    simulate(settings, SimulationOptions(batches=1, rows=3000, seed=1))
    labels = hold_labels(settings)
    ingest = run(instance, "ingest_job")
    assert ingest.success
    with connect_reader(settings) as con:
        unjudged = con.execute(
            "SELECT status, rows_labelled FROM batch_decisions WHERE batch_id = 4"
        ).fetchall()
    assert unjudged == []  # nothing to judge it on yet

    labels.write_parquet(settings.paths.landing / "labels_for_batch_4.parquet")
    ingest = run(instance, "ingest_job")
    assert ingest.success
    meta = metadata(ingest, "raw_deltas")
    assert meta["labels_attached"] == labels.height and meta["rows_appended"] == 0
    (row,) = records(meta["files"])
    assert (row["kind"], row["labels_attached"], row["labels_pending"], row["labels_conflict"]) == (
        "labels",
        labels.height,
        0,
        0,
    )
    assert row["label_delay_median_hours"] > 0
    # when its validation ended and its transaction committed (bench/daemon_bench.py reads them)
    validated, committed = (
        datetime.fromisoformat(row[k].removesuffix("Z")) for k in ("validated_at", "committed_at")
    )
    assert validated <= committed <= utc_now()
    with connect_reader(settings) as con:
        judged = con.execute(
            "SELECT status, rows_labelled FROM batch_decisions WHERE batch_id = 4 ORDER BY decision_id"
        ).fetchall()
    assert judged == [("normal", labels.height)]  # judged by the champion once its labels arrived

    ct = run(instance, "ct_job")
    assert ct.success
    ds = metadata(ct, "training_dataset")
    assert ds["labels_through_batch"] == 5
    assert 0.8 * labels.height < ds["rows_late_labelled"] < labels.height  # the reserve's are golden


def features(**extra: Any) -> dict[str, Any]:
    return {**default_tables()["features"], **extra}


@pytest.mark.parametrize("frozen", [True, False])
def test_models_of_two_feature_sets_are_compared_on_rows_both_can_score(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, frozen: bool
) -> None:
    golden_refresh = 0.0 if frozen else 0.1
    before = make_settings(**small(dataset={"golden_refresh": golden_refresh, "golden_fraction": 0.2}))
    init_warehouse(before)
    simulate(before, SimulationOptions(batches=3, rows=3000, seed=1))
    assert run(instance, "ingest_job").success
    assert run(instance, "ct_job").success  # v0001, and a golden set of rows without tenure_years
    after = make_settings(
        **small(dataset={"golden_refresh": golden_refresh, "golden_fraction": 0.2}),
        features=features(tenure_years={"kind": "numeric", "min": 0, "max": 60}),
    )
    for path in simulate(before, SimulationOptions(batches=3, rows=3000, seed=2)):
        frame = pl.read_parquet(path)
        frame.with_columns((pl.col("tenure_months") / 12).alias("tenure_years")).write_parquet(path)
    assert run(instance, "ingest_job").success
    ct = run(instance, "ct_job")
    meta = metadata(ct, "validation_report")
    golden = check_evaluations(ct, "validation_report")["challenger_no_regression_golden"]
    if frozen:
        assert golden.passed
        assert golden.description.startswith("golden: not compared: only 0 of its ")
        assert "landed without tenure_years" in golden.description
    else:
        assert "landed without tenure_years" in golden.description
        assert "rows stored with every feature both models use" in golden.description
    with connect_reader(after) as con:
        assert con.execute("SELECT change, column_name FROM schema_changes").fetchall() == [
            ("column_added", "tenure_years")
        ]
    assert meta["challenger_version"] == "v0002"
