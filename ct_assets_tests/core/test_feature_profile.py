"""The drift reference profile stored in each model's card: its decile edges and bin shares are exactly
what a direct computation gives (the fast path reads them off one sort)."""

from collections.abc import Callable

import numpy as np
import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.core.monitoring import signals as monitoring
from ct_assets_tests.helpers.data import churn_frame


@pytest.mark.parametrize("n", [1, 2, 3, 10, 1001, 54_321])
def test_deciles_read_off_the_sorted_values_are_numpys_quantiles(n: int) -> None:
    rng = np.random.default_rng(n)
    for values in (rng.normal(size=n) * 100, rng.integers(0, 5, size=n).astype(float)):
        ordered = np.sort(values)
        np.testing.assert_allclose(
            monitoring._deciles_of_sorted(ordered), np.quantile(values, np.linspace(0.1, 0.9, 9)), atol=1e-9
        )


def test_profile_shares_count_every_row_in_its_bin_and_nulls_apart(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    frame = churn_frame(5000, seed=11)
    # Nulls and NaNs in a numeric feature land in the last (missing) bin; ties sit on the edges.
    frame = frame.with_columns(
        pl.when(pl.col("row_id") % 7 == 0)
        .then(None)
        .when(pl.col("row_id") % 11 == 0)
        .then(float("nan"))
        .otherwise(pl.col("usage_hours").round(0))
        .alias("usage_hours")
    )
    profile = monitoring.feature_profile(frame, settings)
    for f in settings.features:
        got = profile[f.name]
        assert sum(got["shares"].values() if f.kind == "categorical" else got["shares"]) == pytest.approx(1.0)
        if f.kind != "numeric":
            continue
        values = frame[f.name].cast(pl.Float64).to_numpy()
        finite = values[np.isfinite(values)]
        edges = sorted({float(x) for x in np.quantile(finite, np.linspace(0.1, 0.9, 9))})
        assert got["edges"] == pytest.approx(edges, abs=1e-9)
        bins = np.bincount(np.searchsorted(np.asarray(edges), finite, side="left"), minlength=len(edges) + 1)
        want = [*(bins / len(values)), (len(values) - len(finite)) / len(values)]
        assert got["shares"] == pytest.approx(want, abs=1e-12), f.name
    assert profile["usage_hours"]["shares"][-1] > 0.2  # the nulls and NaNs were counted, apart


def test_a_large_training_set_is_profiled_on_an_even_deterministic_sample(
    make_settings: Callable[..., Settings],
) -> None:
    """Above PROFILE_MAX_ROWS the profile reads every k-th row: the same rows every time, spread over the
    whole frame, with decile edges where the full set has them (here 4,000 sampled rows: a decile's rank
    moves by about 0.5 percentile point, so 2 points is four standard errors)."""
    settings = make_settings()
    frame = churn_frame(12_000, seed=12)
    sample = monitoring.profile_rows(frame, max_rows=5000)
    assert sample.height == 4000  # stride 3: the smallest that fits in 5000
    assert sample["row_id"].to_list() == frame["row_id"].to_list()[::3]
    assert monitoring.profile_rows(frame, max_rows=12_000) is frame
    full = frame["usage_hours"].cast(pl.Float64).to_numpy()
    full = np.sort(full[np.isfinite(full)])
    part = sample["usage_hours"].cast(pl.Float64).to_numpy()
    part = part[np.isfinite(part)]
    edges = np.quantile(part, np.linspace(0.1, 0.9, 9))
    ranks = (np.searchsorted(full, edges, "left") + np.searchsorted(full, edges, "right")) / 2 / len(full)
    np.testing.assert_allclose(ranks, np.linspace(0.1, 0.9, 9), atol=0.02)
    big = pl.concat([frame] * 25)  # 300,000 rows: profiled on a sample of them
    profile = monitoring.feature_profile(big, settings)
    assert profile == monitoring.feature_profile(monitoring.profile_rows(big), settings)
    assert profile == monitoring.feature_profile(big, settings)


def test_a_feature_added_later_is_compared_on_its_known_values_only(
    make_settings: Callable[..., Settings],
) -> None:
    """Rows stored before a column was added hold nulls in it: the training profile's null share says when
    the column came, not how the data moved. Compared as any feature, the first batch carrying it looks
    drifted (PSI far past the threshold); as a feature added later, its known values are compared."""
    settings = make_settings()
    train = churn_frame(20_000, seed=5)
    old_rows = pl.col("row_id") % 3 != 0  # two thirds stored before usage_hours and region existed
    train = train.with_columns(
        pl.when(old_rows).then(None).otherwise(pl.col("usage_hours")).alias("usage_hours"),
        pl.when(old_rows).then(None).otherwise(pl.col("region")).alias("region"),
    )
    profile = monitoring.feature_profile(train, settings)
    recent = churn_frame(5_000, seed=6)  # every row carries both

    def psi_of(drifts: list[monitoring.FeatureDrift]) -> dict[str, float]:
        return {d.feature: d.psi for d in drifts}

    as_any = psi_of(monitoring.drift(profile, recent, settings))
    added = psi_of(monitoring.drift(profile, recent, settings, {"usage_hours", "region"}))
    assert as_any["usage_hours"] > 1 and as_any["region"] > 1, as_any
    assert added["usage_hours"] < settings.retrain.drift_psi and added["region"] < settings.retrain.drift_psi
    # Its values moving is still drift: the same column shifted by far is flagged.
    shifted = recent.with_columns(pl.col("usage_hours") + 500)
    assert psi_of(monitoring.drift(profile, shifted, settings, {"usage_hours"}))["usage_hours"] > 1
    # A feature not added later keeps its null bin: the same nulls there are drift.
    assert added["tenure_months"] == as_any["tenure_months"]
