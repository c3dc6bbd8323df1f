"""Scoring a file outside the warehouse (what `ct-assets predict` runs): validated as ingest validates a
landed file, chunk by chunk, the label optional; the output written whole or not at all."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.predictions.files import default_out, score_file
from ct_assets.errors import DataError
from ct_assets_tests.core.predictions.support import T_NOW, batch
from ct_assets_tests.helpers.data import SMALL_MODEL


@pytest.fixture
def model(settings: Settings, tmp_path: Path) -> lgbm.LoadedModel:
    train = batch(1, 500, seed=1).filter(pl.col("label").is_not_null())
    trained = lgbm.train(train, settings, {**settings.training, **SMALL_MODEL})
    folder, _ = lgbm.save(trained, tmp_path / "models", "v0007", {})
    return lgbm.load(folder)


def test_default_output_is_beside_the_file(tmp_path: Path) -> None:
    assert default_out(tmp_path / "day.parquet") == tmp_path / "day.predictions.parquet"
    assert default_out(tmp_path / "day.CSV") == tmp_path / "day.predictions.parquet"
    assert default_out(tmp_path / "a.b.csv") == tmp_path / "a.b.predictions.parquet"


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_file_without_labels_is_scored_row_by_row(
    settings: Settings, model: lgbm.LoadedModel, tmp_path: Path, fmt: str
) -> None:
    rows = batch(1000, 700, seed=2).drop("label")
    path = tmp_path / f"new.{fmt}"
    rows.write_parquet(path) if fmt == "parquet" else rows.write_csv(path)
    out = score_file(settings, path, model, default_out(path), utc_now())
    written = pl.read_parquet(out.out)
    assert written.columns == ["row_id", "score", "decision", "model_version"]
    assert written["row_id"].to_list() == rows["row_id"].to_list()  # the file's row order
    np.testing.assert_allclose(written["score"].to_numpy(), model.predict(rows), atol=1e-9)
    assert written["decision"].to_list() == (written["score"] >= settings.decision_threshold).to_list()
    assert set(written["model_version"]) == {"v0007"}
    assert (out.rows, out.positive, out.version) == (700, int(written["decision"].sum()), "v0007")


def test_text_labels_may_be_absent_too(
    make_settings: Callable[..., Settings], model: lgbm.LoadedModel, tmp_path: Path
) -> None:
    s = make_settings(columns={"label_classes": ["stay", "churn"], "row_id": ""})
    path = tmp_path / "new.parquet"
    batch(1, 300, seed=3).drop("label", "row_id").write_parquet(path)
    out = score_file(s, path, model, tmp_path / "out.parquet", utc_now())
    assert pl.read_parquet(out.out).columns == ["score", "decision", "model_version"]
    assert out.rows == 300


def test_an_invalid_chunk_anywhere_leaves_no_output(
    make_settings: Callable[..., Settings], model: lgbm.LoadedModel, tmp_path: Path
) -> None:
    s = make_settings(ingest={"chunk_rows": 1000})
    rows = batch(1, 2500, seed=4).drop("label")
    out = tmp_path / "out.parquet"
    out.write_bytes(b"an earlier output")

    bad_last = tmp_path / "bad_last.parquet"
    rows.with_columns(
        pl.when(pl.col("row_id") == 2400).then(-5.0).otherwise(pl.col("tenure_months")).alias("tenure_months")
    ).write_parquet(bad_last)
    with pytest.raises(DataError) as err:
        score_file(s, bad_last, model, out, utc_now())
    assert str(err.value).startswith(
        "bad_last.parquet: column 'tenure_months' fails expect_column_values_to_be_between"
    )
    assert "1 of " in str(err.value) and "-5.0" in str(err.value)
    assert out.read_bytes() == b"an earlier output"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    repeated = tmp_path / "repeated.parquet"
    rows.with_columns(
        pl.when(pl.col("row_id") == 2300).then(5).otherwise(pl.col("row_id")).alias("row_id")
    ).write_parquet(
        repeated
    )  # row id 5 in the first chunk and again in the third: the suite sees one chunk at a time
    with pytest.raises(
        DataError,
        match=r"repeated.parquet: column 'row_id' fails expect_column_values_to_be_unique \(observed e.g. 5\)",
    ):
        score_file(s, repeated, model, out, utc_now())
    assert out.read_bytes() == b"an earlier output"

    good = tmp_path / "good.parquet"
    rows.write_parquet(good)
    assert score_file(s, good, model, out, utc_now()).rows == 2500
    assert pl.read_parquet(out).height == 2500


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d: d.rename({"plan": "plan_x"}),
            "column 'plan' fails expect_column_to_exist (observed missing)",
        ),
        (
            lambda d: d.with_columns(pl.lit("gold").alias("plan")),
            "column 'plan' fails expect_column_values_to_be_in_set",
        ),
        (
            lambda d: d.with_columns(pl.lit(7).alias("label")),
            "column 'label' fails expect_column_values_to_be_in_set",
        ),
        (
            lambda d: d.with_columns(pl.lit(T_NOW.replace(year=T_NOW.year + 1)).alias("event_time")),
            "column 'event_time' fails expect_column_values_to_be_between",
        ),
    ],
)
def test_invalid_files_are_refused_naming_the_column_and_the_rule(
    settings: Settings, model: lgbm.LoadedModel, tmp_path: Path, make: Callable, message: str
) -> None:
    path = tmp_path / "x.parquet"
    make(batch(1, 200, seed=5)).write_parquet(path)
    with pytest.raises(DataError) as err:
        score_file(settings, path, model, tmp_path / "out.parquet", utc_now())
    assert str(err.value).startswith(f"x.parquet: {message}")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out.parquet").exists()


def test_unreadable_missing_and_misplaced_files_are_refused(
    settings: Settings, model: lgbm.LoadedModel, tmp_path: Path
) -> None:
    def refused(path: Path, out: Path) -> str:
        with pytest.raises(DataError) as err:
            score_file(settings, path, model, out, utc_now())
        return str(err.value)

    out = tmp_path / "out.parquet"
    assert refused(tmp_path / "missing.parquet", out).endswith("missing.parquet: no such file")
    truncated = tmp_path / "cut.parquet"
    batch(1, 200, seed=6).write_parquet(truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    assert "cut.parquet: is not a readable Parquet file" in refused(truncated, out)
    text = tmp_path / "rows.txt"
    text.write_text("a,b\n")
    assert refused(text, out).endswith("rows.txt: not a .parquet or .csv file")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert refused(empty, out) == "empty.csv: is empty (0 bytes)"
    good = tmp_path / "good.parquet"
    batch(1, 50, seed=7).write_parquet(good)
    assert "would overwrite the file scored" in refused(good, good)
    # An output in the landing folder would be ingested as a delta.
    assert "in the landing folder, where it would be ingested" in refused(
        good, settings.paths.landing / "good.predictions.parquet"
    )
    assert not out.exists()


def test_a_model_needing_a_feature_the_configuration_lacks_is_refused(
    make_settings: Callable[..., Settings], settings: Settings, model: lgbm.LoadedModel, tmp_path: Path
) -> None:
    fewer = {f.name: {"kind": f.kind} for f in settings.features if f.name != "plan"}
    s = make_settings(features=fewer)
    path = tmp_path / "new.parquet"
    batch(1, 100, seed=8).write_parquet(path)
    with pytest.raises(
        DataError, match=r"^model v0007 needs feature 'plan', which the configuration does not name$"
    ):
        score_file(s, path, model, tmp_path / "out.parquet", utc_now())
