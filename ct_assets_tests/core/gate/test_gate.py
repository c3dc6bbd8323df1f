"""The promotion gate on scored sets: identical models pass, a clearly worse challenger, a slice-only
regression, small or one-class slices, insane predictions, the floor, lower-is-better metrics, no
champion, and the slice masks."""

import json
from collections.abc import Callable

import numpy as np
import pytest

from ct_assets.config import Settings
from ct_assets.core import gate
from ct_assets.core.gate import slices

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
    s = make_settings(gate={"tolerance": 0.5, "slice_tolerance": 0.5, "golden_tolerance": 0.5})
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
        got = slices.slice_masks(s, 1)
        as_text = values.astype(str)
        want = [(f"region={v}", as_text == v) for v in sorted(set(as_text.tolist()))]
        assert [label for label, _ in got] == [label for label, _ in want]
        for (_, a), (_, b) in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)
