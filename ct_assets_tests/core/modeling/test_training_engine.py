"""`[training] engine` and `[cluster] executor` (issue 14): the settings, the even split of rows over Dask workers, the scheduler
address it needs, and the tolerance a Dask-trained model is reproduced within. No Dask needed here; the
training itself runs on Dask workers in ct_assets_tests/e2e/test_dask_training.py."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.core.modeling import dask_training
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.modeling.metrics import roc_auc
from ct_assets.errors import ConfigError, CtError
from ct_assets.tools.reproduce import DASK_AUC_TOLERANCE, within_tolerance
from ct_assets_tests.helpers.data import SMALL_MODEL, churn_frame


def test_the_engine_defaults_to_single_node_and_is_not_passed_to_lightgbm(
    make_settings: Callable[..., Settings],
) -> None:
    default = make_settings()
    assert default.training_engine == "lightgbm" and "engine" not in default.training
    dask = make_settings(training={"engine": "dask"})
    assert dask.training_engine == "dask" and "engine" not in dask.training
    assert dask.training == default.training


def test_an_unknown_engine_is_refused_in_one_line(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError) as e:
        make_settings(training={"engine": "spark"})
    assert "[training] engine must be one of lightgbm, dask, got 'spark'" in str(e.value)
    assert "\n" not in str(e.value)


def test_steps_run_in_process_unless_the_cluster_table_says_dask(
    make_settings: Callable[..., Settings],
) -> None:
    import dagster as dg

    from ct_assets.defs.executors import executor_for

    default = make_settings()
    assert default.executor == "in_process" and executor_for(default) is dg.in_process_executor
    assert make_settings(cluster={"executor": "dask"}).executor == "dask"
    with pytest.raises(ConfigError) as e:
        make_settings(cluster={"executor": "celery"})
    assert str(e.value).endswith("[cluster] executor must be one of in_process, dask, got 'celery'")


@pytest.mark.parametrize(("rows", "parts"), [(10, 2), (11, 3), (7, 7), (3, 5), (100_001, 4)])
def test_rows_are_split_evenly_and_completely(rows: int, parts: int) -> None:
    bounds = dask_training.even_bounds(rows, parts)
    sizes = [end - start for start, end in bounds]
    assert len(bounds) == min(rows, parts) and sum(sizes) == rows
    assert max(sizes) - min(sizes) <= 1
    assert [b[0] for b in bounds[1:]] == [b[1] for b in bounds[:-1]] and bounds[0][0] == 0


def test_the_dask_engine_needs_the_scheduler_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dask_training.SCHEDULER_ENV, raising=False)
    with pytest.raises(CtError, match=r"needs the Dask scheduler's address in \$CT_DASK_SCHEDULER"):
        dask_training.scheduler_address()
    monkeypatch.setenv(dask_training.SCHEDULER_ENV, " tcp://127.0.0.1:8786 ")
    assert dask_training.scheduler_address() == "tcp://127.0.0.1:8786"


def test_a_copy_is_within_tolerance_and_a_weaker_model_is_not(
    make_settings: Callable[..., Settings],
) -> None:
    s = make_settings(training=SMALL_MODEL)
    rows, golden = churn_frame(3000, seed=5), churn_frame(1500, seed=6)
    original = lgbm.train(rows, s)
    assert dask_training.machines_of(original.booster) == 1
    weak = lgbm.train(rows, s, params={**s.training, "num_iterations": 1, "num_leaves": 2})
    card = {"version": "v0001", "features": original.features, "num_threads": 1}
    loaded = [lgbm.LoadedModel(m.booster, card, Path("v0001/model.txt")) for m in (original, weak)]
    y = lgbm.labels(golden, s)
    auc = [roc_auc(y, m.predict(golden)) for m in loaded]
    assert auc[0] - auc[1] > DASK_AUC_TOLERANCE  # the weak model is far enough below to fail

    same = within_tolerance(s, loaded[0], loaded[0], golden, "h", rows.height, 0.0)
    assert same.within_tolerance and same.reproducible and not same.identical
    assert same.reason.startswith(
        f"within tolerance (trained on Dask): golden AUC {auc[0]:.4f} retrained vs {auc[0]:.4f} original, "
        f"difference 0.0000 (tolerance {DASK_AUC_TOLERANCE}); largest score difference 0.0000 over 1500"
    )
    worse = within_tolerance(s, loaded[0], loaded[1], golden, "h", rows.height, 0.0)
    largest = float(np.max(np.abs(loaded[1].predict(golden) - loaded[0].predict(golden))))
    assert not worse.within_tolerance and not worse.reproducible
    assert worse.reason.startswith(
        f"NOT within tolerance (trained on Dask): golden AUC {auc[1]:.4f} retrained vs {auc[0]:.4f} original, "
        f"difference {auc[0] - auc[1]:.4f} (tolerance {DASK_AUC_TOLERANCE}); largest score difference "
        f"{largest:.4f} over 1500 golden rows; from 3000 rows with data hash h"
    )
    unlabelled = golden.with_columns(pl.lit(None, dtype=golden["label"].dtype).alias("label"))
    with pytest.raises(CtError, match="its golden set has no labelled rows"):
        within_tolerance(s, loaded[0], loaded[1], unlabelled, "h", rows.height, 0.0)
