"""The per-slice confidence (gate.choose_slice_confidence): the ceiling for big slices, lower for many
noisy ones so that the false-block rate meets its target (checked by simulation), and its bounds."""

import numpy as np
import pytest
from scipy.stats import norm

from ct_assets.core import gate


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
