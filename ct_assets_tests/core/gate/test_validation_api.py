"""The Python API: validate_new_model on caller-given model paths and fixed test data."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ct_assets.config import Settings, load_settings
from ct_assets.core import gate
from ct_assets.core.modeling import model as lgbm
from ct_assets.errors import DataError
from ct_assets.tools.simulator import SimulationOptions, generate_rows
from ct_assets.validation import evaluate_new_model, validate_new_model


def churn_frame(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(generate_rows(rng, n, SimulationOptions(batches=1, rows=n, seed=seed)))


@dataclass(frozen=True)
class Models:
    good: Path
    good_again: Path  # a second, independent training on the same rows
    weak: Path
    test: pl.DataFrame


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    root = tmp_path_factory.mktemp("api")
    s = load_settings(cwd=root)
    train = churn_frame(4000, seed=11)
    base = {**s.training, "num_iterations": 40}
    saved = {}
    for version, params in (
        ("v0001", base),
        ("v0002", base),
        ("v0003", {**base, "num_iterations": 2, "num_leaves": 2}),
    ):
        folder, _ = lgbm.save(lgbm.train(train, s, params), root / "models", version, {})
        saved[version] = folder / "model.txt"
    return Models(saved["v0001"], saved["v0002"], saved["v0003"], churn_frame(5000, seed=12))


@pytest.fixture
def configured(make_settings: Callable[..., Settings]) -> Settings:
    """The gate's configuration, read by the API from CT_ASSETS_CONFIG (defaults here)."""
    return make_settings()


def test_identical_models_are_safe(models: Models, configured: Settings) -> None:
    assert validate_new_model(models.good, models.good, models.test) is True
    assert validate_new_model(models.good_again, models.good, models.test) is True
    assert models.good.read_text() == models.good_again.read_text()


def test_much_weaker_model_is_not_safe(models: Models, configured: Settings) -> None:
    assert validate_new_model(models.weak, models.good, models.test) is False
    result = evaluate_new_model(models.weak, models.good, models.test)
    assert "challenger_no_regression_test" in result.failed_checks
    assert gate.SANITY_CHECK not in result.failed_checks
    # and the other way round the stronger model is an improvement
    assert validate_new_model(models.good, models.weak, models.test) is True


@pytest.mark.parametrize("kind", ["polars", "pandas", "parquet str", "parquet path"])
def test_test_data_in_every_accepted_form(
    models: Models, configured: Settings, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "test.parquet"
    models.test.write_parquet(path)
    data = {
        "polars": models.test,
        "pandas": models.test.to_pandas(),
        "parquet str": str(path),
        "parquet path": path,
    }[kind]
    assert validate_new_model(models.good, models.good, data) is True
    assert validate_new_model(models.weak, models.good, data) is False


def test_same_verdict_whatever_the_form(models: Models, configured: Settings, tmp_path: Path) -> None:
    path = tmp_path / "test.parquet"
    models.test.write_parquet(path)
    results = [
        evaluate_new_model(models.weak, models.good, data).to_json()
        for data in (models.test, models.test.to_pandas(), path)
    ]
    assert results[0] == results[1] == results[2]


def test_model_folder_and_no_champion(models: Models, configured: Settings) -> None:
    assert validate_new_model(models.good.parent, None, models.test) is True
    result = evaluate_new_model(models.good.parent, None, models.test)
    assert "no champion" in result.checks["challenger_no_regression_test"].summary


def test_missing_column_is_a_clear_data_error(models: Models, configured: Settings) -> None:
    for column in ("region", "label", "tenure_months"):
        with pytest.raises(DataError) as info:
            validate_new_model(models.good, models.good, models.test.drop(column))
        message = str(info.value)
        assert f"'{column}'" in message
        assert "\n" not in message


def test_unusable_test_data_is_a_clear_data_error(
    models: Models, configured: Settings, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match="does not exist"):
        validate_new_model(models.good, models.good, tmp_path / "missing.parquet")
    with pytest.raises(DataError, match="polars or pandas"):
        validate_new_model(models.good, models.good, {"region": ["north"]})
    with pytest.raises(DataError, match="no labelled rows"):
        validate_new_model(models.good, models.good, models.test.with_columns(pl.lit(None).alias("label")))


def test_the_configured_gate_is_applied(models: Models, make_settings: Callable[..., Settings]) -> None:
    make_settings(gate={"tolerance": 1.0, "slice_tolerance": 1.0, "metric_floor": 0.0})
    assert validate_new_model(models.weak, models.good, models.test) is True
    make_settings(gate={"metric_floor": 0.999})
    assert validate_new_model(models.good, models.good, models.test) is False
