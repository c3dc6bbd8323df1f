"""Uncertainty of paired metric differences (ct_assets.lib.stats) and the per-slice confidence choice
(ct_assets.lib.gate.choose_slice_confidence), checked against brute force and simulation."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from ct_assets.core import gate
from ct_assets.core.gate import stats
from ct_assets.core.modeling import metrics


def two_models(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, challenger, champion): two correlated models sharing one latent signal, the challenger
    a little sharper, so their AUC difference is positive but uncertain."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    signal = 1.2 * y + rng.normal(0, 1, n)
    challenger = 1 / (1 + np.exp(-(signal + rng.normal(0, 0.5, n))))
    champion = 1 / (1 + np.exp(-(0.8 * signal + rng.normal(0, 0.7, n))))
    return y, challenger, champion


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


# ---------------------------------------------------------------------------------------------- DeLong


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


# ------------------------------------------------------------------------------------------- bootstrap


def brier_request(n: int, seed: int) -> stats.PairedRequest:
    y, a, b = two_models(n, seed)
    return stats.PairedRequest(stats.weighted_metric("brier", 0.5), y, a, b, sign=-1.0)


def test_bootstrap_differences_are_deterministic_for_a_seed() -> None:
    req = {"brier": brier_request(3000, seed=4), "f1": brier_request(3000, seed=4)}
    req["f1"] = stats.PairedRequest(
        stats.weighted_metric("f1", 0.5), req["f1"].y, req["f1"].challenger, req["f1"].champion, 1.0
    )
    one = stats.bootstrap_differences(3000, req, resamples=300, seed=11)
    two = stats.bootstrap_differences(3000, req, resamples=300, seed=11)
    assert set(one) == {"brier", "f1"}
    for key in one:
        assert one[key].shape == (300,)
        np.testing.assert_array_equal(one[key], two[key])
    other = stats.bootstrap_differences(3000, req, resamples=300, seed=12)
    assert not np.array_equal(one["brier"], other["brier"])


def test_bootstrap_in_several_chunks_is_deterministic_and_complete() -> None:
    """n = 20,000 rows: at most 200 resamples fit in one chunk of weights, so 450 take three chunks."""
    req = {"brier": brier_request(20_000, seed=5)}
    one = stats.bootstrap_differences(20_000, req, resamples=450, seed=3)["brier"]
    two = stats.bootstrap_differences(20_000, req, resamples=450, seed=3)["brier"]
    assert one.shape == (450,)
    assert np.all(np.isfinite(one))
    np.testing.assert_array_equal(one, two)
    assert len(np.unique(one)) > 400  # chunks draw different resamples, not one chunk repeated


def test_bootstrap_spread_matches_the_sampling_error_and_shrinks_with_n() -> None:
    """The spread of the paired Brier difference is the standard error of a mean of per-row differences,
    sd(d) / sqrt(n); it shrinks with n like 1 / sqrt(n)."""
    spreads = {}
    for n in (500, 8000):
        req = brier_request(n, seed=6)
        d = stats.bootstrap_differences(n, {"brier": req}, resamples=400, seed=7)["brier"]
        per_row = -((req.challenger - req.y) ** 2 - (req.champion - req.y) ** 2)
        expected = float(np.std(per_row, ddof=1) / math.sqrt(n))
        assert float(np.std(d, ddof=1)) == pytest.approx(expected, rel=0.15)  # 400 resamples: ~3.5 % MC error
        assert float(np.mean(d)) == pytest.approx(float(np.mean(per_row)), abs=0.5 * expected)
        spreads[n] = float(np.std(d, ddof=1))
    assert spreads[8000] < spreads[500] / 2.5  # sqrt(16) = 4 in theory


def test_bootstrap_of_a_slice_uses_its_rows_only() -> None:
    y, a, b = two_models(4000, seed=8)
    mask = np.arange(4000) < 1000
    reqs = {
        "all": stats.PairedRequest(stats.weighted_metric("brier", 0.5), y, a, b, -1.0),
        "slice": stats.PairedRequest(
            stats.weighted_metric("brier", 0.5), y[mask], a[mask], b[mask], -1.0, mask
        ),
    }
    d = stats.bootstrap_differences(4000, reqs, resamples=300, seed=1)
    per_row = -((a - y) ** 2 - (b - y) ** 2)
    assert float(np.mean(d["slice"])) == pytest.approx(float(np.mean(per_row[mask])), abs=0.003)
    assert float(np.std(d["slice"])) > 1.5 * float(np.std(d["all"]))  # a quarter of the rows: ~2x


@pytest.mark.parametrize("name", ["log_loss", "brier", "calibration_error", "precision", "recall", "f1"])
def test_the_normal_law_of_the_resample_sums_agrees_with_resampling_rows(name: str) -> None:
    """Above exact_max_rows the resample sums are drawn from their normal law: the differences it gives
    must match the exact row-resampling bootstrap in centre and spread, overall and for a slice."""
    n = 30_000
    y, a, b = two_models(n, seed=9)
    mask = np.arange(n) % 4 == 0
    metric = stats.weighted_metric(name, 0.5)
    sign = 1.0 if name in ("precision", "recall", "f1") else -1.0
    reqs = {
        "all": stats.PairedRequest(metric, y, a, b, sign),
        "slice": stats.PairedRequest(metric, y[mask], a[mask], b[mask], sign, mask),
    }
    exact = stats.bootstrap_differences(n, reqs, resamples=1000, seed=2, exact_max_rows=n)
    normal = stats.bootstrap_differences(n, reqs, resamples=1000, seed=2, exact_max_rows=n - 1)
    e, m = exact["all"], normal["all"]
    assert not np.array_equal(e, m)  # drawn from the normal law, not resampled
    assert np.all(np.isfinite(m))
    assert float(np.std(m)) == pytest.approx(float(np.std(e)), rel=0.12)  # 1000 resamples: ~2 % MC error
    assert float(np.mean(m)) == pytest.approx(float(np.mean(e)), abs=0.25 * float(np.std(e)))
    # A slice is always resampled (its counts may be small): the same draws as resampling it alone.
    alone = stats.bootstrap_differences(n, {"slice": reqs["slice"]}, resamples=1000, seed=2, exact_max_rows=n)
    np.testing.assert_array_equal(normal["slice"], alone["slice"])
    assert float(np.std(normal["slice"])) == pytest.approx(float(np.std(exact["slice"])), rel=0.12)
    again = stats.bootstrap_differences(n, reqs, resamples=1000, seed=2, exact_max_rows=n - 1)
    np.testing.assert_array_equal(normal["all"], again["all"])


def test_sparse_counts_are_resampled_not_drawn_from_the_normal_law() -> None:
    """Precision with a handful of predicted positives: a normal draw could go below zero, so the rows
    are resampled whatever the set's size."""
    n = 30_000
    y, a, b = two_models(n, seed=10)
    a = np.where(np.arange(n) < 40, 0.9, 0.1)  # 40 predicted positives
    req = {"p": stats.PairedRequest(stats.weighted_metric("precision", 0.5), y, a, b, 1.0)}
    exact = stats.bootstrap_differences(n, req, resamples=300, seed=4, exact_max_rows=n)
    other = stats.bootstrap_differences(n, req, resamples=300, seed=4, exact_max_rows=10)
    np.testing.assert_array_equal(exact["p"], other["p"])


def test_precision_recall_and_f1_share_their_columns_and_draws() -> None:
    """Precision, recall and F1 read the same per-row columns: bootstrapping them together gives each
    exactly what it gets alone (the same resamples), with the shared columns built once."""
    n = 5000
    y, a, b = two_models(n, seed=14)
    reqs = {
        m: stats.PairedRequest(stats.weighted_metric(m, 0.5), y, a, b, 1.0)
        for m in ("precision", "recall", "f1")
    }
    together = stats.bootstrap_differences(n, reqs, resamples=300, seed=5)
    for m, req in reqs.items():
        alone = stats.bootstrap_differences(n, {m: req}, resamples=300, seed=5)
        np.testing.assert_array_equal(together[m], alone[m])


def test_resampling_only_the_rows_that_move_the_sums_has_the_law_of_resampling_all_rows() -> None:
    """_exact_resample_sums draws only the rows with a non-zero value (binomially many of the n draws,
    then which of them): its sums must have the mean n * mean(column) and the covariance n * cov(rows) of
    drawing all n rows with replacement, and a column of ones must sum to n exactly."""
    n, resamples = 20_000, 4000
    rng = np.random.default_rng(15)
    sparse = np.zeros((n, 3), dtype=np.float32)
    hit = rng.random(n) < 0.02  # 2 % of the rows carry values
    sparse[hit, 0] = 1.0
    sparse[hit, 1] = rng.random(int(hit.sum())).astype(np.float32)
    sparse[: n // 2, 2] = np.where(hit[: n // 2], 1.0, 0.0)  # a slice's weight-like column
    columns = np.concatenate([sparse, np.ones((n, 1), dtype=np.float32)], axis=1)
    sums = np.concatenate(list(stats._exact_resample_sums(columns, resamples, seed=6)))
    assert sums.shape == (resamples, 4)
    assert np.all(sums[:, 3] == n)
    x = sparse.astype(np.float64)
    mean, cov = n * x.mean(axis=0), n * np.cov(x.T, bias=True)
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_allclose(
        sums[:, :3].mean(axis=0), mean, atol=float((4 * sd / math.sqrt(resamples)).max())
    )
    np.testing.assert_allclose(np.cov(sums[:, :3].T), cov, rtol=0.1)


def test_bootstrap_with_nothing_to_do() -> None:
    req = {"brier": brier_request(100, seed=1)}
    assert stats.bootstrap_differences(0, req, resamples=100)["brier"].size == 0
    assert stats.bootstrap_differences(100, req, resamples=1)["brier"].size == 0
    assert stats.bootstrap_differences(100, {}, resamples=100) == {}


@pytest.mark.parametrize("name", ["log_loss", "brier", "calibration_error", "f1", "precision", "recall"])
def test_weighted_metrics_with_unit_weights_equal_the_plain_metrics(name: str) -> None:
    y, p, _ = two_models(2000, seed=10)
    ones = np.ones((1, len(y)), dtype=np.float32)
    got = float(stats.weighted_metric(name, 0.5)(y.astype(np.float32), p.astype(np.float32), ones)[0])
    if name == "calibration_error":
        want = stats.calibration_error(y, p)
    else:
        want = metrics.all_metrics(y, p, 0.5)[name]
    assert got == pytest.approx(want, abs=1e-4)  # float32 weights


def test_weighted_metric_refuses_roc_auc() -> None:
    with pytest.raises(ValueError, match="roc_auc"):
        stats.weighted_metric("roc_auc", 0.5)


# ------------------------------------------------------------------------------ per-slice confidence


def simulated_false_block_rate(ses: list[float], tolerance: float, confidence: float, seed: int) -> float:
    """Share of simulated cycles in which a challenger exactly as good as the champion is blocked in at
    least one slice: each slice's estimated change is N(0, se), blocked when its lower bound at the
    one-sided `confidence` falls below -tolerance."""
    rng = np.random.default_rng(seed)
    se = np.asarray(ses)
    delta = rng.normal(0.0, se, size=(40_000, len(se)))
    blocked = (delta - norm.ppf(confidence) * se < -tolerance).any(axis=1)
    return float(blocked.mean())


def test_slice_confidence_is_the_ceiling_when_slices_are_big() -> None:
    conf, rate = gate.choose_slice_confidence([0.002] * 12, 0.03, 0.05, 0.95)
    assert conf == 0.95
    assert rate < 1e-6
    assert gate.choose_slice_confidence([], 0.03, 0.05, 0.95)[0] == 0.95
    assert gate.choose_slice_confidence([], 0.03, 0.05, 0.99)[0] == 0.99


def test_slice_confidence_drops_for_many_noisy_slices_and_meets_the_target() -> None:
    ses = [0.0075] * 10
    conf, rate = gate.choose_slice_confidence(ses, 0.03, 0.05, 0.95)
    assert gate.MIN_SLICE_CONFIDENCE < conf < 0.95
    assert rate == pytest.approx(0.05, abs=1e-6)  # bisected onto the target
    # The figure it reports is what happens: simulate exactly-as-good challengers at that confidence.
    assert simulated_false_block_rate(ses, 0.03, conf, seed=1) == pytest.approx(0.05, abs=0.006)
    # At the ceiling instead, the false-block rate would have been well above the target.
    assert simulated_false_block_rate(ses, 0.03, 0.95, seed=2) > 1.5 * 0.05
    # More noisy slices: lower (or equal) confidence.
    more, _ = gate.choose_slice_confidence(ses * 2, 0.03, 0.05, 0.95)
    assert more < conf


def test_slice_confidence_stops_at_its_floor_and_says_the_target_is_missed() -> None:
    ses = [0.05] * 20
    conf, rate = gate.choose_slice_confidence(ses, 0.03, 0.05, 0.95)
    assert conf == gate.MIN_SLICE_CONFIDENCE
    assert rate > 0.05
    assert simulated_false_block_rate(ses, 0.03, conf, seed=3) == pytest.approx(rate, abs=0.01)


@pytest.mark.parametrize("seed", range(8))
def test_slice_confidence_stays_within_its_bounds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ses = list(rng.uniform(0.0005, 0.08, size=int(rng.integers(1, 40))))
    ceiling = float(rng.choice([0.9, 0.95, 0.99]))
    target = float(rng.choice([0.01, 0.05, 0.2]))
    conf, rate = gate.choose_slice_confidence(ses, 0.03, target, ceiling)
    assert gate.MIN_SLICE_CONFIDENCE <= conf <= ceiling
    if conf > gate.MIN_SLICE_CONFIDENCE:
        assert rate <= target + 1e-9
    else:
        assert rate >= target - 1e-9


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
