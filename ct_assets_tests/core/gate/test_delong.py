"""DeLong's paired ROC AUC difference (ct_assets.core.gate.stats) checked against a brute-force paired
bootstrap, ties, slices read off one sort, and scores made into probabilities first."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from ct_assets.core.gate import stats
from ct_assets.core.modeling import metrics
from ct_assets_tests.core.gate.paired import two_models


def brute_force_bootstrap(
    y: np.ndarray, a: np.ndarray, b: np.ndarray, resamples: int, seed: int
) -> np.ndarray:
    """AUC(a) - AUC(b) on `resamples` paired resamples of the rows, each scored from scratch."""
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    for i in range(resamples):
        idx = rng.integers(0, len(y), len(y))
        out[i] = metrics.roc_auc(y[idx], a[idx]) - metrics.roc_auc(y[idx], b[idx])
    return out


@pytest.mark.parametrize("seed", [0, 3])
def test_delong_interval_agrees_with_a_brute_force_paired_bootstrap(seed: int) -> None:
    """DeLong's standard error of the paired AUC difference equals the spread of a brute-force paired
    bootstrap within 10 %, and the 95 % interval's ends match the bootstrap's percentiles within 15 % of
    the interval's half-width.

    Why these tolerances: with B = 1,500 resamples the bootstrap's standard deviation has a Monte Carlo
    relative error of about 1/sqrt(2B), 1.8 %; the two variance estimators also differ by finite-sample
    terms (about 3 % at n = 1,500 over six seeds tried). An interval that ignores the pairing (the two
    AUCs' variances summed) is about 60 % wider here, far outside the tolerance, as asserted below."""
    y, a, b = two_models(1500, seed)
    boot = brute_force_bootstrap(y, a, b, resamples=1500, seed=100 + seed)
    iv = stats.delong_difference(y, a, b, 0.95)
    se = stats.delong_se(y, a, b)
    assert se is not None
    assert iv.method == "delong"
    assert iv.confidence == 0.95
    assert iv.estimate == pytest.approx(metrics.roc_auc(y, a) - metrics.roc_auc(y, b), abs=1e-12)
    assert iv.estimate == pytest.approx(float(np.mean(boot)), abs=0.15 * se)
    assert se == pytest.approx(float(np.std(boot, ddof=1)), rel=0.10)
    half = (iv.high - iv.low) / 2
    assert half == pytest.approx(norm.ppf(0.975) * se, rel=1e-9)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    assert abs(iv.low - lo) < 0.15 * half
    assert abs(iv.high - hi) < 0.15 * half

    # The comparison can fail: ignoring the pairing gives a standard error far outside the tolerance.
    coin = np.full(len(y), 0.5)  # AUC exactly 0.5 with zero variance: isolates each model's own variance
    se_a, se_b = stats.delong_se(y, a, coin), stats.delong_se(y, b, coin)
    assert se_a is not None and se_b is not None
    assert math.hypot(se_a, se_b) > 1.3 * float(np.std(boot, ddof=1))


def test_identical_models_give_a_zero_width_interval_at_zero() -> None:
    y, a, _ = two_models(2000, seed=1)
    for confidence in (0.8, 0.95, 0.999):
        iv = stats.delong_difference(y, a, a.copy(), confidence)
        assert (iv.estimate, iv.low, iv.high) == (0.0, 0.0, 0.0)
    assert stats.delong_se(y, a, a.copy()) == 0.0
    # and a different model does not
    _, other, _ = two_models(2000, seed=2)
    iv = stats.delong_difference(y, other, a, 0.95)
    assert iv.high - iv.low > 0


def test_delong_is_undefined_without_two_rows_of_each_class() -> None:
    p = np.linspace(0.1, 0.9, 6)
    for y in (np.zeros(6), np.ones(6), np.array([1, 0, 0, 0, 0, 0])):
        iv = stats.delong_difference(y, p, p[::-1], 0.95)
        assert not iv.lower_is_finite
        assert math.isnan(iv.estimate)
        assert stats.delong_se(y, p, p[::-1]) is None
    assert stats.delong_se(np.array([1, 1, 0, 0, 0, 0]), p, p[::-1]) is not None


def test_delong_handles_ties_like_the_pairwise_count() -> None:
    """Coarse scores (many ties): the estimate is the exact difference of the half-counted AUCs."""
    rng = np.random.default_rng(9)
    y = (rng.random(400) < 0.4).astype(int)
    a = np.round(rng.random(400) * 0.5 + 0.3 * y, 1)
    b = np.round(rng.random(400) * 0.5 + 0.2 * y, 1)
    iv = stats.delong_difference(y, a, b, 0.9)
    assert iv.estimate == pytest.approx(metrics.roc_auc(y, a) - metrics.roc_auc(y, b), abs=1e-12)
    assert iv.low < iv.estimate < iv.high


def test_delong_on_a_slice_read_off_the_whole_sets_sort_equals_delong_on_the_slice_alone() -> None:
    """The gate sorts each model's scores once per set and reads every slice's DeLong off that sort: the
    AUCs and the standard error must equal DeLong run on the slice's rows alone, ties included."""
    y, a, b = two_models(6000, seed=12)
    a = np.round(a, 2)  # many tied scores, within and across classes
    paired = stats.PairedScores(y, a, b)
    rng = np.random.default_rng(13)
    for mask in (rng.random(6000) < 0.2, np.arange(6000) % 3 == 0, np.ones(6000, dtype=bool)):
        whole = paired.delong(mask)
        alone = stats.delong(y[mask], a[mask], b[mask])
        assert whole is not None and alone is not None
        assert whole.challenger_auc == pytest.approx(alone.challenger_auc, abs=1e-12)
        assert whole.champion_auc == pytest.approx(alone.champion_auc, abs=1e-12)
        assert whole.challenger_auc == pytest.approx(metrics.roc_auc(y[mask], a[mask]), abs=1e-12)
        assert whole.se == pytest.approx(alone.se, rel=1e-9)
    few = np.zeros(6000, dtype=bool)
    few[np.flatnonzero(y)[:1]] = True
    few[np.flatnonzero(y == 0)[:50]] = True
    assert paired.delong(few) is None  # one positive: no DeLong


# ----------------------------------------------------------------------------------- as_probabilities


def test_as_probabilities_keeps_valid_scores_as_they_are() -> None:
    p = np.array([0.0, 0.25, 1.0])
    out = stats.as_probabilities(p)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, p)
    assert stats.as_probabilities(np.array([], dtype=np.float32)).size == 0


def test_as_probabilities_repairs_what_is_not_a_probability() -> None:
    p = np.array([np.nan, np.inf, -np.inf, 1.7, -0.2, 0.4])
    np.testing.assert_array_equal(stats.as_probabilities(p), [0.5, 1.0, 0.0, 1.0, 0.0, 0.4])
    assert p[0] != p[0]  # the input is left alone
