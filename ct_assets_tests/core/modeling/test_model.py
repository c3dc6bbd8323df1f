"""LightGBM models: deterministic training on the configured features, the text model and its card on
disk, what load refuses (an altered file, a missing card, a path that is not a version)."""

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.core.modeling import model as lgbm
from ct_assets.errors import CtError, RegistryError
from ct_assets_tests.helpers.data import SMALL_MODEL, churn_frame


@pytest.fixture
def small(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(training=SMALL_MODEL)


@pytest.fixture(scope="module")
def rows() -> pl.DataFrame:
    return churn_frame(3000, seed=5)


# ------------------------------------------------------------------------------------------- training


def test_two_trainings_on_the_same_rows_are_byte_identical(small: Settings, rows: pl.DataFrame) -> None:
    a = lgbm.train(rows, small)
    b = lgbm.train(rows, small)
    assert a.booster.model_to_string() == b.booster.model_to_string()
    assert a.booster.num_trees() == 20
    # the comparison is not vacuous: another seed, with row and feature sampling on, gives another model
    other = lgbm.train(rows, small, params={**small.training, "seed": 7})
    assert other.booster.model_to_string() != a.booster.model_to_string()


def test_training_uses_the_configured_features(small: Settings, rows: pl.DataFrame) -> None:
    m = lgbm.train(rows, small)
    assert m.booster.feature_name() == small.feature_names
    assert m.params == small.training
    region = next(f for f in m.features if f["name"] == "region")
    assert region == {
        "name": "region",
        "kind": "categorical",
        "categories": ["north", "south", "east", "west"],
    }


def test_training_refuses_a_single_class(small: Settings, rows: pl.DataFrame) -> None:
    with pytest.raises(CtError, match="one class"):
        lgbm.train(rows.with_columns(pl.lit(1).alias("label")), small)


def test_encode_maps_categories_to_codes_and_unknowns_to_missing() -> None:
    features = [
        {"name": "x", "kind": "numeric"},
        {"name": "c", "kind": "categorical", "categories": ["a", "b"]},
    ]
    frame = pl.DataFrame({"c": ["b", "a", "zzz", None], "x": [1, 2, 3, None]})
    m = lgbm.encode(frame, features)
    assert m.dtype == np.float64
    assert m[:, 0].tolist()[:3] == [1.0, 2.0, 3.0]
    assert math.isnan(m[3, 0])
    assert m[:2, 1].tolist() == [1.0, 0.0]
    assert np.isnan(m[2:, 1]).all()


def test_labels_follow_the_configured_positive_class(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(columns={"label_classes": ["stay", "churn"]})
    frame = pl.DataFrame({"label": ["churn", "stay", "stay", "churn"]})
    assert lgbm.labels(frame, s).tolist() == [1, 0, 0, 1]


# --------------------------------------------------------------------------------------- save and load


def test_save_and_load_round_trip_with_card(small: Settings, rows: pl.DataFrame, tmp_path: Path) -> None:
    m = lgbm.train(rows, small)
    models = tmp_path / "models"
    folder, card = lgbm.save(m, models, "v0001", {"dataset_hash": "abc123", "n_train": rows.height})
    assert folder == (models / "v0001").resolve()
    assert sorted(p.name for p in models.iterdir()) == ["v0001"]  # no temporary folder left behind
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "model.txt"]
    text = (folder / "model.txt").read_text(encoding="utf-8")
    assert text == m.booster.model_to_string()
    on_disk = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(card, default=str))
    assert card["version"] == "v0001"
    assert card["format"] == "lightgbm-text"
    assert card["model_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert card["seed"] == 42
    assert card["num_threads"] == 2
    assert card["params"] == small.training
    assert card["features"] == m.features
    assert card["num_trees"] == 20
    assert card["dataset_hash"] == "abc123"
    assert card["n_train"] == 3000
    assert card["code_version"] == lgbm.code_version()

    expected = m.booster.predict(lgbm.encode(rows, m.features))
    for loaded in (lgbm.load(folder), lgbm.load(folder / "model.txt"), lgbm.load_version(models, "v0001")):
        assert loaded.version == "v0001"
        assert loaded.features == m.features
        np.testing.assert_array_equal(loaded.predict(rows), expected)
    assert not (folder / "model.pkl").exists()

    with pytest.raises(RegistryError, match="already exists"):
        lgbm.save(m, models, "v0001", {})
    assert lgbm.next_version(models, ["v0001", "v0003"]) == "v0004"
    (models / "v0007").mkdir()
    assert lgbm.next_version(models, ["v0001", "v0003", "latest"]) == "v0008"
    assert lgbm.next_version(tmp_path / "none", []) == "v0001"


def test_altered_model_file_is_refused(small: Settings, rows: pl.DataFrame, tmp_path: Path) -> None:
    folder, _ = lgbm.save(lgbm.train(rows, small), tmp_path / "models", "v0001", {})
    model_file = folder / "model.txt"
    model_file.write_text(model_file.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="SHA-256"):
        lgbm.load(folder)
    with pytest.raises(RegistryError, match="SHA-256"):
        lgbm.load_version(tmp_path / "models", "v0001")


def test_model_without_card(small: Settings, rows: pl.DataFrame, tmp_path: Path) -> None:
    folder, _ = lgbm.save(lgbm.train(rows, small), tmp_path / "models", "v0001", {})
    bare = tmp_path / "elsewhere" / "model.txt"
    bare.parent.mkdir()
    bare.write_text((folder / "model.txt").read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(RegistryError, match="no card"):
        lgbm.load(bare)
    loaded = lgbm.load(bare, features_from=small)
    np.testing.assert_array_equal(loaded.predict(rows), lgbm.load(folder).predict(rows))
    with pytest.raises(RegistryError, match="does not exist"):
        lgbm.load(tmp_path / "missing" / "model.txt")


def test_card_features_must_match_the_model(small: Settings, rows: pl.DataFrame, tmp_path: Path) -> None:
    folder, card = lgbm.save(lgbm.train(rows, small), tmp_path / "models", "v0001", {})
    card["features"] = list(reversed(card["features"]))
    (folder / "card.json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(RegistryError, match="differ"):
        lgbm.load(folder)


@pytest.mark.parametrize(
    "version",
    [
        "../x",
        "v1/../../etc",
        "v0001/../../etc",
        "v0001/..",
        "/etc",
        "v1",
        "latest",
        "",
        "V0001",
        "v0001\n",
        None,
        1,
    ],
)
def test_model_dir_refuses_what_is_not_a_version(tmp_path: Path, version: object) -> None:
    with pytest.raises(RegistryError):
        lgbm.model_dir(tmp_path, version)  # type: ignore[arg-type]


def test_model_dir_accepts_versions_and_refuses_symlinks_out(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    assert lgbm.model_dir(models, "v0001") == models.resolve() / "v0001"
    assert lgbm.model_dir(models, "v12345") == models.resolve() / "v12345"
    outside = tmp_path / "outside"
    outside.mkdir()
    (models / "v0002").symlink_to(outside)
    with pytest.raises(RegistryError, match="outside"):
        lgbm.model_dir(models, "v0002")
