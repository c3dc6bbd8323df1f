"""Monitoring the champion: PSI is an effect size judged only from a minimum sample, and decay is judged
against the floor and the champion's own validation figure, never from too few rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.core.monitoring import signals as monitoring


def test_psi_is_an_effect_size_with_a_minimum_sample() -> None:
    """A trivial shift in a huge sample is not drift; a large shift in a tiny sample is not judged."""
    from ct_assets.config import load_settings

    settings = load_settings(None)
    rng = np.random.default_rng(0)
    names = settings.feature_names

    def frame(n: int, shift: float) -> pl.DataFrame:
        cols: dict[str, Any] = {}
        for f in settings.features:
            if f.kind == "numeric":
                cols[f.name] = rng.normal(50 + shift, 10, n)
            else:
                cols[f.name] = rng.choice(list(f.categories or ["a", "b"]), n)
        return pl.DataFrame(cols)

    profile = monitoring.feature_profile(frame(20_000, 0.0), settings)
    assert set(profile) == set(names)
    big_trivial = monitoring.drift(profile, frame(200_000, 0.2), settings)  # 0.02 standard deviations
    assert not any(d.drifted for d in big_trivial)
    assert max(d.psi for d in big_trivial) < 0.01
    small_large = monitoring.drift(profile, frame(settings.retrain.drift_min_rows - 1, 15.0), settings)
    assert max(d.psi for d in small_large) > settings.retrain.drift_psi  # large, but too few rows
    assert not any(d.drifted for d in small_large)
    enough = monitoring.drift(profile, frame(settings.retrain.drift_min_rows, 15.0), settings)
    numeric = {f.name for f in settings.features if f.kind == "numeric"}
    assert {d.feature for d in enough if d.drifted} == numeric


@pytest.mark.parametrize(
    ("metric", "floor", "reference", "decayed"),
    [
        ("roc_auc", 0.0, 0.95, True),  # far below its own validation figure
        ("roc_auc", 0.0, 0.80, False),  # within the margin of it
        ("roc_auc", 0.90, None, True),  # below the absolute floor, no reference needed
        ("roc_auc", 0.70, None, False),
        ("log_loss", 0.0, 0.30, True),  # lower is better: a higher loss is the decay
        ("log_loss", 0.0, 5.00, False),
    ],
)
def test_decay_is_judged_against_the_floor_and_the_champions_own_validation_figure(
    make_settings: Callable[..., Settings], metric: str, floor: float, reference: float | None, decayed: bool
) -> None:
    settings = make_settings(
        **{
            "": {"primary_metric": metric},
            "retrain": {"decay_floor": floor, "decay_margin": 0.03, "decay_min_rows": 100},
        }
    )
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 2000)
    scores = np.clip(0.5 * y + rng.normal(0.25, 0.3, 2000), 0.001, 0.999)  # a fair but imperfect model
    d = monitoring.decay(settings, y, scores, reference)
    assert d.rows == 2000
    assert d.decayed is decayed, d.reason
    assert d.reason.startswith(f"{metric} {d.value:.4f} on 2000 fresh labels")
    # Too few rows: never judged, whatever the value.
    few = monitoring.decay(settings, y[:99], scores[:99], reference)
    assert not few.decayed
    assert few.reason == "99 fresh labelled rows; decay is judged from 100"


def test_a_batch_left_unjudged_for_want_of_labels_is_judged_once_they_arrive() -> None:
    """Late labels (issue 13): a batch is judged once; a batch left `unjudged` because its labels had not
    arrived is judged again when enough of them have (and only then, not at every trickle)."""
    from ct_assets.config import load_settings
    from ct_assets.core.monitoring.evidence import to_judge

    s = load_settings(None)  # [holdback] min_rows = 1000
    decided = {1: ("normal", 5000), 2: ("unjudged", 0), 3: ("unjudged", 900), 4: ("suspect", 4000)}
    labelled = {1: 6000, 2: 999, 3: 1200, 4: 4500, 5: 10}
    assert to_judge(s, labelled, decided) == [3, 5]
    assert to_judge(s, {2: 1000, 3: 900}, decided) == [2]
