"""The paired bootstrap of the gate's secondary metrics (ct_assets.core.gate.stats): deterministic for
a seed, its spread against the sampling error, slices, the normal law of the resample sums for large
sets against resampling rows, sparse counts, shared columns, and the weighted metrics it resamples."""

import math

import numpy as np
import pytest

from ct_assets.core.gate import stats
from ct_assets.core.modeling import metrics
from ct_assets_tests.core.gate.paired import two_models


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
