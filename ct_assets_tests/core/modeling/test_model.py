"""LightGBM models (deterministic training, text model + card on disk), metrics, and the promotion gate."""

import hashlib
import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ct_assets.config import METRICS, Settings
from ct_assets.core import gate
from ct_assets.core.gate import rule
from ct_assets.core.modeling import metrics
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


# -------------------------------------------------------------------------------------------- metrics


def brute_force_auc(y: np.ndarray, p: np.ndarray) -> float:
    pos = [s for s, t in zip(p, y, strict=True) if t == 1]
    neg = [s for s, t in zip(p, y, strict=True) if t == 0]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_equals_the_pairwise_count(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = (rng.random(60) < 0.4).astype(int)
    p = np.round(rng.random(60) * 0.5 + 0.3 * y, 1)  # coarse: many ties
    assert metrics.roc_auc(y, p) == pytest.approx(brute_force_auc(y, p), abs=1e-12)


def test_roc_auc_edge_cases() -> None:
    y = np.array([0, 0, 1, 1])
    assert metrics.roc_auc(y, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert metrics.roc_auc(y, np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert metrics.roc_auc(y, np.full(4, 0.5)) == 0.5
    assert math.isnan(metrics.roc_auc(np.ones(4, dtype=int), np.array([0.1, 0.2, 0.3, 0.4])))
    assert math.isnan(metrics.roc_auc(np.zeros(4, dtype=int), np.array([0.1, 0.2, 0.3, 0.4])))


def test_log_loss_and_brier() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.6, 0.5])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.5)) / 4
    assert metrics.log_loss(y, p) == pytest.approx(expected)
    assert metrics.brier(y, p) == pytest.approx((0.01 + 0.04 + 0.16 + 0.25) / 4)
    # a confident mistake costs a lot, but stays finite
    worst = metrics.log_loss(np.array([1]), np.array([0.0]))
    assert math.isfinite(worst)
    assert worst == pytest.approx(-math.log(metrics.EPS))
    assert math.isnan(metrics.log_loss(np.array([]), np.array([])))
    assert math.isnan(metrics.brier(np.array([]), np.array([])))


def test_f1_precision_recall_at_threshold() -> None:
    y = np.array([1, 1, 0, 0, 1])
    p = np.array([0.9, 0.4, 0.6, 0.1, 0.5])  # at 0.5: tp = 2 (0.9, 0.5 on the threshold), fp = 1, fn = 1
    assert metrics.at_threshold(y, p, 0.5) == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3}
    )
    # at 0.65: tp = 1, fp = 0, fn = 2
    assert metrics.at_threshold(y, p, 0.65) == pytest.approx({"precision": 1.0, "recall": 1 / 3, "f1": 0.5})
    assert metrics.at_threshold(y, p, 0.95) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert set(metrics.all_metrics(y, p, 0.5)) == set(METRICS)


def test_metric_directions() -> None:
    assert metrics.improvement("roc_auc", 0.8, 0.7) == pytest.approx(0.1)
    assert metrics.improvement("log_loss", 0.3, 0.4) == pytest.approx(0.1)
    assert metrics.improvement("brier", 0.3, 0.2) == pytest.approx(-0.1)
    assert metrics.meets_floor("roc_auc", 0.7, 0.6)
    assert not metrics.meets_floor("roc_auc", 0.5, 0.6)
    assert metrics.meets_floor("log_loss", 0.5, 0.6)
    assert not metrics.meets_floor("log_loss", 0.7, 0.6)
    assert not metrics.meets_floor("roc_auc", math.nan, 0.0)


# ----------------------------------------------------------------------------------------------- gate

REGIONS = np.array(["north", "south", "east"])


def scored(
    n: int, seed: int, strength: float = 1.6, small_slice: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, informative scores in (0, 1), region per row; the first `small_slice` rows are 'west')."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    p = 1 / (1 + np.exp(-(strength * (2 * y - 1) + rng.normal(0, 1.2, n))))
    region = REGIONS[rng.integers(0, 3, n)]
    region[:small_slice] = "west"
    return y, p, region


def eval_set(name: str, y, challenger, champion, region) -> gate.EvalSet:
    return gate.EvalSet(name, y, {"region": region}, challenger, champion)


def two_sets(challenger_strength: float | None = None, champion: bool = True) -> list[gate.EvalSet]:
    """A golden and a holdout set; the challenger equals the champion unless given its own strength."""
    out = []
    for i, name in enumerate(("golden", "holdout")):
        y, p, region = scored(3000, seed=i)
        ch = p if challenger_strength is None else scored(3000, seed=i, strength=challenger_strength)[1]
        out.append(eval_set(name, y, ch, p.copy() if champion else None, region))
    return out


ALL_CHECKS = {
    "challenger_no_regression_golden",
    "challenger_no_regression_holdout",
    gate.SLICE_CHECK,
    gate.FLOOR_CHECK,
    gate.SANITY_CHECK,
    gate.SECONDARY_CHECK,
}


def test_identical_models_pass(settings: Settings) -> None:
    result = gate.evaluate(settings, two_sets())
    assert set(result.checks) == ALL_CHECKS
    assert result.passed, result.failed_checks
    assert result.failed_checks == []
    assert {c.status for c in result.comparisons} == {"ok"}
    assert len(result.comparisons) == 2 * (1 + 3)
    for c in result.comparisons:
        assert c.delta == 0.0
    json.dumps(result.to_json())  # the report is JSON


def test_clearly_worse_challenger_fails_regression(settings: Settings) -> None:
    result = gate.evaluate(settings, two_sets(challenger_strength=0.3))
    assert not result.passed
    assert "challenger_no_regression_golden" in result.failed_checks
    assert "challenger_no_regression_holdout" in result.failed_checks
    summary = result.checks["challenger_no_regression_golden"].summary
    assert "roc_auc" in summary
    assert "vs champion" in summary
    overall = [c for c in result.comparisons if c.slice == "overall"]
    assert all(c.status == "regression" and c.delta < -0.1 for c in overall)


def test_drop_within_tolerance_passes(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(gate={"tolerance": 0.5, "slice_tolerance": 0.5})
    result = gate.evaluate(s, two_sets(challenger_strength=0.3))
    assert result.passed, result.failed_checks


def test_slice_only_regression_fails_only_the_slice_check(settings: Settings) -> None:
    y, p, region = scored(40_000, seed=3, small_slice=300)
    challenger = p.copy()
    west = region == "west"
    challenger[west] = np.random.default_rng(0).permutation(challenger[west])  # useless in the west only
    result = gate.evaluate(settings, [eval_set("holdout", y, challenger, p, region)])
    assert result.failed_checks == [gate.SLICE_CHECK]
    summary = result.checks[gate.SLICE_CHECK].summary
    assert "region=west" in summary
    assert "1 slice(s) not shown non-inferior" in summary
    by_slice = {c.slice: c for c in result.comparisons}
    assert by_slice["overall"].status == "ok"
    assert by_slice["region=west"].status == "regression"
    assert by_slice["region=west"].rows == 300
    assert all(by_slice[f"region={r}"].status == "ok" for r in REGIONS)


def test_small_or_one_class_slices_are_insufficient_not_gated(settings: Settings) -> None:
    y, p, region = scored(5000, seed=4, small_slice=100)  # west: 100 rows < min_slice_rows 200
    region[4000:4300] = "solo"
    y[4000:4300] = 0  # 300 rows, one class only
    challenger = p.copy()
    for name in ("west", "solo"):
        mask = region == name
        challenger[mask] = 1 - challenger[mask]  # as bad as it gets there
    result = gate.evaluate(settings, [eval_set("golden", y, challenger, p, region)])
    by_slice = {c.slice: c for c in result.comparisons}
    assert by_slice["region=west"].status == "insufficient"
    assert by_slice["region=west"].rows == 100
    assert by_slice["region=solo"].status == "insufficient"
    assert result.checks[gate.SLICE_CHECK].passed
    summary = result.checks[gate.SLICE_CHECK].summary
    assert "insufficient evidence (too few rows or one class) in 2: " in summary
    assert "golden region=west" in summary and "golden region=solo" in summary


@pytest.mark.parametrize(
    ("predictions", "words"),
    [
        (lambda p: np.full_like(p, 0.3), "constant"),
        (lambda p: np.where(np.arange(len(p)) == 5, np.nan, p), "non-finite"),
        (lambda p: np.where(np.arange(len(p)) == 5, np.inf, p), "non-finite"),
        (lambda p: p * 1.5, "outside [0, 1]"),
        (lambda p: p - 0.5, "outside [0, 1]"),
    ],
    ids=["constant", "nan", "inf", "above one", "negative"],
)
def test_insane_predictions_fail_sanity(
    settings: Settings, predictions: Callable[[np.ndarray], np.ndarray], words: str
) -> None:
    y, p, region = scored(3000, seed=6)
    result = gate.evaluate(settings, [eval_set("holdout", y, predictions(p), None, region)])
    assert gate.SANITY_CHECK in result.failed_checks
    assert words in result.checks[gate.SANITY_CHECK].summary
    assert "holdout" in result.checks[gate.SANITY_CHECK].summary
    assert not result.passed


def test_floor_check_both_ways(make_settings: Callable[..., Settings]) -> None:
    sets = two_sets()
    assert gate.evaluate(make_settings(gate={"metric_floor": 0.6}), sets).checks[gate.FLOOR_CHECK].passed
    high = gate.evaluate(make_settings(gate={"metric_floor": 0.99}), sets)
    assert high.failed_checks == [gate.FLOOR_CHECK]
    assert "golden" in high.checks[gate.FLOOR_CHECK].summary
    assert "below the floor 0.99" in high.checks[gate.FLOOR_CHECK].summary


def test_floor_of_a_lower_is_better_metric(make_settings: Callable[..., Settings]) -> None:
    sets = two_sets()
    loose = make_settings(**{"": {"primary_metric": "log_loss"}}, gate={"metric_floor": 2.0})
    assert loose.primary_metric == "log_loss"
    assert gate.evaluate(loose, sets).checks[gate.FLOOR_CHECK].passed
    strict = make_settings(**{"": {"primary_metric": "log_loss"}}, gate={"metric_floor": 0.01})
    assert gate.FLOOR_CHECK in gate.evaluate(strict, sets).failed_checks


def test_regression_of_a_lower_is_better_metric(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(**{"": {"primary_metric": "log_loss"}}, gate={"metric_floor": 5.0})
    worse = gate.evaluate(s, two_sets(challenger_strength=0.3))
    assert "challenger_no_regression_golden" in worse.failed_checks
    better = [eval_set(x.name, x.y, x.champion, x.challenger, x.slices["region"]) for x in two_sets(0.3)]
    assert gate.evaluate(s, better).passed


def test_no_champion_passes_regression_checks(settings: Settings) -> None:
    result = gate.evaluate(settings, two_sets(champion=False))
    assert result.passed, result.failed_checks
    for name in ("challenger_no_regression_golden", "challenger_no_regression_holdout"):
        assert result.checks[name].passed
        assert "no champion" in result.checks[name].summary
    assert {c.status for c in result.comparisons} == {"no_champion"}
    assert "champion" not in result.metrics["golden"]


def test_slice_masks_are_the_same_for_text_columns_and_any_other_values() -> None:
    """Text slice values (object arrays, as polars gives them) take a fast path; labels, order and masks
    are those of the generic path, which compares every value as text."""
    rng = np.random.default_rng(3)
    text = rng.choice(np.array(["north", "south", "Öst", "(null)", "10", "9"], dtype=object), size=5000)
    mixed = text.copy()
    mixed[17] = 10  # not a string: the generic path
    for values in (text, mixed):
        s = gate.EvalSet("golden", np.zeros(len(values)), {"region": values}, np.zeros(len(values)), None)
        got = rule._slice_masks(s, 1)
        as_text = values.astype(str)
        want = [(f"region={v}", as_text == v) for v in sorted(set(as_text.tolist()))]
        assert [label for label, _ in got] == [label for label, _ in want]
        for (_, a), (_, b) in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
