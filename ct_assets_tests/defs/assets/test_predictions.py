"""The predictions asset in the ingest run, through Dagster: the new rows scored by the champion, rows a
failed run missed scored by the next one, an unloadable champion that does not fail the run, a blocked
challenger's shadow figures in the asset's metadata, and the data-lag check measured on scored rows."""

from __future__ import annotations

from collections.abc import Callable

import dagster as dg
import numpy as np
import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.core.predictions.support import predictions, register
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.runs import check, failed_steps, materialized, metadata, run

LAG_CHECK = "champion_model_data_lag_within_limit"


@pytest.fixture
def served(make_settings: Callable[..., Settings]) -> Settings:
    """A warehouse with one batch of 1,000 rows and a champion (v0001) trained on it; nothing scored yet."""
    s = make_settings(**small())
    init_warehouse(s)
    (path,) = simulate(s, SimulationOptions(batches=1, rows=1000, seed=1))
    first = pl.read_parquet(path)
    assert ingest_landed_files(s).rows_appended == 1000
    register(s, "v0001", first, watermark_batch_id=1, watermark_event_time=first["event_time"].max())
    return s


def _newest(s: Settings, sql: str) -> object:
    with connect_reader(s) as con:
        return con.execute(sql).fetchall()[0][0]


def test_the_ingest_run_scores_the_new_rows_and_the_lag_is_measured_on_them(
    served: Settings, instance: dg.DagsterInstance
) -> None:
    simulate(served, SimulationOptions(batches=1, rows=1500, seed=2))
    result = run(instance, "ingest_job")
    assert result.success
    assert materialized(result) == {"raw_deltas", "predictions", "champion_performance"}
    meta = metadata(result, "predictions")
    # The first batch landed before the champion existed: it is scored now, with the new one.
    assert (meta["champion"], meta["rows_scored"], meta["rows_remaining"]) == ("v0001", 2500, 0)
    assert meta["dagster/row_count"] == 2500 and meta["not_scored"] == "none"
    assert meta["shadow"].startswith("none")
    assert set(meta["seconds"]) >= {"read", "champion scores", "write"}
    table = predictions(served)
    assert table.height == 2500 and table["row_id"].n_unique() == 2500

    lag = check(result, LAG_CHECK)
    assert lag.metadata["lag_measured_on"].value == "scored rows"
    newest = str(_newest(served, "SELECT max(event_time) FROM raw_deltas"))
    assert lag.metadata["newest_scored_event_time"].value == lag.metadata["newest_ingested_event_time"].value
    assert lag.metadata["newest_scored_event_time"].value == newest[:19]


def test_rows_missed_by_a_failed_run_are_scored_by_the_next(
    served: Settings, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ct_assets.defs.assets.predictions as asset_module

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("scoring broke")

    simulate(served, SimulationOptions(batches=1, rows=1200, seed=3))
    with monkeypatch.context() as patched:
        patched.setattr(asset_module, "score_new_rows", broken)
        failed = run(instance, "ingest_job")
    assert not failed.success and failed_steps(failed) == ["predictions"]
    assert _newest(served, "SELECT count(*) FROM raw_deltas") == 2200  # the rows are in, unscored
    assert predictions(served).height == 0

    simulate(served, SimulationOptions(batches=1, rows=800, seed=4))
    result = run(instance, "ingest_job")
    assert result.success
    meta = metadata(result, "predictions")
    assert (meta["rows_scored"], meta["rows_remaining"]) == (3000, 0)
    table = predictions(served)
    assert table.height == 3000 and table["row_id"].n_unique() == 3000


def test_an_unloadable_champion_does_not_fail_the_ingest_run(
    served: Settings, instance: dg.DagsterInstance
) -> None:
    simulate(served, SimulationOptions(batches=1, rows=600, seed=5))
    assert run(instance, "ingest_job").success
    scored_until = _newest(served, "SELECT max(event_time) FROM predictions")
    model_file = served.paths.models / "v0001" / "model.txt"
    model_file.write_text(model_file.read_text().replace("tree", "tere", 1))

    simulate(served, SimulationOptions(batches=1, rows=700, seed=6))
    result = run(instance, "ingest_job")
    assert result.success
    meta = metadata(result, "predictions")
    assert (meta["rows_scored"], meta["rows_remaining"]) == (0, 700)
    assert meta["not_scored"].startswith("v0001 could not be loaded")
    # The data lag is measured on the newest row the champion scored, not on the newest one ingested.
    lag = check(result, LAG_CHECK)
    assert lag.metadata["newest_scored_event_time"].value == str(scored_until)[:19]
    assert lag.metadata["newest_ingested_event_time"].value > lag.metadata["newest_scored_event_time"].value


def test_a_blocked_challenger_shows_its_shadow_figures(
    served: Settings, instance: dg.DagsterInstance
) -> None:
    first = pl.read_parquet(next(served.paths.archive.iterdir()))
    register(served, "v0002", first, action="blocked", watermark_batch_id=1, iterations=3)
    simulate(served, SimulationOptions(batches=1, rows=1500, seed=7))
    result = run(instance, "ingest_job")
    assert result.success
    meta = metadata(result, "predictions")
    assert meta["shadow"] == "v0002, awaits review (blocked)"
    assert (meta["shadow_rows_scored"], meta["shadow_rows_compared"]) == (1500, 1500)
    labelled = _newest(served, "SELECT count(label) FROM raw_deltas WHERE _batch_id = 2")
    assert meta["shadow_rows_labelled"] == labelled and 1400 < labelled < 1500  # 2% land unlabelled
    flips = predictions(served, "_batch_id = 2").pivot(on="role", index="row_id", values="decision")
    assert meta["shadow_decision_flips"] == pytest.approx((flips["champion"] != flips["shadow"]).mean())
    assert min(meta["shadow_champion_roc_auc"], meta["shadow_challenger_roc_auc"]) > 0.5
    assert meta["shadow_champion_roc_auc"] > meta["shadow_challenger_roc_auc"]
    assert "**v0002** (shadow) vs champion v0001 on 1,500 live rows" in meta["shadow_evaluation"]
    assert "shadow_report" not in meta  # registered by hand: no validation report to write into
    assert predictions(served, "role = 'shadow'")["_batch_id"].to_list() == [2] * 1500
    assert pl.Series(meta["batches_scored"].split(", ")).to_list() == ["2", "1"]


def test_champion_performance_takes_the_champions_stored_scores_and_scores_only_the_rest(
    served: Settings, instance: dg.DagsterInstance
) -> None:
    from ct_assets.core.modeling import model as lgbm
    from ct_assets.core.monitoring.champion import _complete, stored_scores
    from ct_assets.core.triggers.freshness import fresh_rows

    simulate(served, SimulationOptions(batches=1, rows=1500, seed=2))
    assert run(instance, "ingest_job").success
    loaded = lgbm.load_version(served.paths.models, "v0001")
    with connect_reader(served) as con:
        frame, _ = fresh_rows(con, served, 1, with_batch_ids=True)
        rows = frame.filter(pl.col("label").is_not_null())
        stored = stored_scores(con, served, "v0001", rows)
        other = stored_scores(con, served, "v0002", rows)  # another model's scores are never taken
    assert rows.height > 1000 and set(rows["_batch_id"]) == {2}
    expected = loaded.predict(rows)
    assert stored.dtype == expected.dtype and np.array_equal(stored, expected)  # the same bits
    assert np.isnan(other).all()
    partly = stored.copy()
    partly[::3] = np.nan  # rows without a stored score are scored by the model
    assert np.array_equal(_complete(loaded, rows, partly), expected)
