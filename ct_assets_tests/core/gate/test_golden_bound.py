"""The golden set bounds catastrophic forgetting only ([gate] golden_tolerance, 0.05, overall and per
slice at max(slice_tolerance, golden_tolerance)), while the recent holdout keeps the tight tolerances:
a challenger that adapted (better on the holdout, a little worse on the golden set) passes, one that
forgot a lot is blocked as forgetting, and a one-slice regression on the holdout is still blocked.

Scored sets are built with numpy: champion and challenger share one latent signal, and the challenger's
own noise is tuned per slice (bisection) so that its ROC AUC differs from the champion's by a chosen
amount; with many rows the paired interval is narrow, so each verdict is far from its boundary."""

from collections.abc import Callable

import numpy as np
import pytest

from ct_assets.config import Settings
from ct_assets.core import gate
from ct_assets.core.gate.results import tolerances
from ct_assets.core.modeling.metrics import roc_auc

GOLDEN = gate.regression_check("golden")
HOLDOUT = gate.regression_check("holdout")
ROWS = 10_000  # per slice value


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def scored_set(
    name: str, seed: int, deltas: dict[str, float], rows: dict[str, int] | None = None
) -> gate.EvalSet:
    """A set whose slices (region=...) hold `rows` rows each (ROWS by default), on which the challenger's
    ROC AUC minus the champion's is `deltas[region]` (within 0.002)."""
    rng = np.random.default_rng(seed)
    sizes = {r: (rows or {}).get(r, ROWS) for r in deltas}
    region = np.concatenate([np.full(n, r, dtype=object) for r, n in sizes.items()])
    n = len(region)
    y = (rng.random(n) < 0.3).astype(np.int64)
    signal = 1.5 * y + rng.normal(0, 1, n)
    champion = _sigmoid(signal + rng.normal(0, 1, n))
    noise = rng.normal(0, 1, n)
    challenger = np.empty(n)
    for r, want in deltas.items():
        m = region == r
        base = roc_auc(y[m], champion[m])

        def gap(k: float, m: np.ndarray = m, base: float = base, want: float = want) -> float:
            return roc_auc(y[m], _sigmoid(signal[m] + k * noise[m])) - base - want

        lo, hi = 0.0, 6.0  # gap falls as the challenger's noise k grows
        assert gap(lo) > 0 > gap(hi), (r, want)
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if gap(mid) > 0 else (lo, mid)
        challenger[m] = _sigmoid(signal[m] + lo * noise[m])
        assert abs(roc_auc(y[m], challenger[m]) - base - want) < 0.002, (r, want)
    return gate.EvalSet(name, y, {"region": region}, challenger, champion)


def sets(golden: float, holdout: float = 0.02) -> list[gate.EvalSet]:
    """Golden and holdout sets with the same change in each of three slices."""
    regions = ("north", "south", "east")
    return [
        scored_set("golden", 1, dict.fromkeys(regions, golden)),
        scored_set("holdout", 2, dict.fromkeys(regions, holdout)),
    ]


def comparison(result: gate.GateResult, set_name: str, slice_name: str = "overall") -> gate.Comparison:
    (c,) = [c for c in result.comparisons if (c.set, c.slice) == (set_name, slice_name)]
    return c


def slices_of(result: gate.GateResult, set_name: str) -> list[gate.Comparison]:
    return [c for c in result.comparisons if c.set == set_name and c.slice != "overall"]


@pytest.fixture(scope="module")
def adapted() -> list[gate.EvalSet]:
    """Better on the recent holdout by 0.02, worse on the golden set by 0.03: it adapted."""
    return sets(golden=-0.03)


def test_an_adapted_challenger_a_little_worse_on_golden_passes_by_default(
    settings: Settings, adapted: list[gate.EvalSet]
) -> None:
    assert settings.gate.golden_tolerance == 0.05
    result = gate.evaluate(settings, adapted)
    assert result.passed, {n: result.checks[n].summary for n in result.failed_checks}
    golden = comparison(result, "golden")
    assert golden.delta == pytest.approx(-0.03, abs=0.003)
    assert golden.low is not None and -0.05 < golden.low < -0.03  # worse, but not catastrophically
    assert (golden.tolerance, golden.status) == (0.05, "ok")
    assert result.checks[GOLDEN].summary.startswith("golden: not worse")
    for c in slices_of(result, "golden"):
        assert c.tolerance == 0.05 and c.status in ("ok", "underpowered"), c
    holdout = comparison(result, "holdout")
    assert holdout.delta == pytest.approx(0.02, abs=0.003) and holdout.tolerance == 0.01


def test_the_same_challenger_is_blocked_as_forgetting_under_a_tight_golden_tolerance(
    make_settings: Callable[..., Settings], adapted: list[gate.EvalSet]
) -> None:
    """golden_tolerance 0.01 (the gate before issue 12): the golden set holds the challenger to the
    holdout's tolerance overall and to slice_tolerance per slice; it is blocked, and named forgetting."""
    s = make_settings(gate={"golden_tolerance": 0.01})
    result = gate.evaluate(s, adapted)
    assert set(result.failed_checks) == {GOLDEN, gate.SLICE_CHECK}
    summary = result.checks[GOLDEN].summary
    assert summary.startswith("forgetting: better on the recent holdout (+0.02")
    assert "but worse on the golden set. golden: worse" in summary and "tolerance -0.01" in summary
    assert comparison(result, "golden").status == "regression"
    assert result.checks[HOLDOUT].passed
    golden_slices = slices_of(result, "golden")
    assert {c.tolerance for c in golden_slices} == {0.03}  # max(slice_tolerance 0.03, golden_tolerance 0.01)
    assert {c.status for c in golden_slices} == {"regression"}
    assert all(c.status == "ok" for c in slices_of(result, "holdout"))


def test_a_challenger_far_worse_on_golden_is_blocked_by_default(settings: Settings) -> None:
    result = gate.evaluate(settings, sets(golden=-0.08))
    assert GOLDEN in result.failed_checks and HOLDOUT not in result.failed_checks
    golden = comparison(result, "golden")
    assert golden.delta == pytest.approx(-0.08, abs=0.003)
    assert golden.low is not None and golden.low < -0.05 and golden.status == "regression"
    assert result.checks[GOLDEN].summary.startswith("forgetting: better on the recent holdout")
    assert "tolerance -0.05" in result.checks[GOLDEN].summary


def test_a_one_slice_regression_on_the_holdout_is_still_blocked_and_named(settings: Settings) -> None:
    """Better on the holdout overall and untouched on the golden set, but far worse for region=west (a
    twentieth of the holdout): the slice check blocks, naming the slice, at the holdout's slice tolerance."""
    regions = {"north": 0.01, "south": 0.01, "east": 0.01, "west": -0.10}
    holdout = scored_set("holdout", 3, regions, rows={"west": 1500})
    golden = scored_set("golden", 4, {"north": 0.0, "south": 0.0, "east": 0.0})
    result = gate.evaluate(settings, [golden, holdout])
    assert result.failed_checks == [gate.SLICE_CHECK]
    summary = result.checks[gate.SLICE_CHECK].summary
    assert "1 slice(s) not shown non-inferior" in summary
    assert "holdout region=west" in summary and "worst holdout region=west:" in summary
    west = comparison(result, "holdout", "region=west")
    assert (west.tolerance, west.status, west.rows) == (0.03, "regression", 1500)
    assert comparison(result, "holdout").delta > 0


@pytest.mark.parametrize(
    ("golden_tolerance", "slice_tolerance", "want"),
    [
        (0.05, 0.03, (0.05, 0.05)),
        (0.01, 0.03, (0.01, 0.03)),
        (0.08, 0.03, (0.08, 0.08)),
        (0.05, 0.06, (0.05, 0.06)),
    ],
)
def test_golden_slices_are_held_to_the_larger_of_slice_and_golden_tolerance(
    make_settings: Callable[..., Settings], golden_tolerance: float, slice_tolerance: float, want: tuple
) -> None:
    s = make_settings(gate={"golden_tolerance": golden_tolerance, "slice_tolerance": slice_tolerance})
    assert tolerances(s.gate, "golden") == want
    assert tolerances(s.gate, "holdout") == (s.gate.tolerance, slice_tolerance)


def test_a_golden_slice_worse_by_more_than_slice_tolerance_passes_only_within_golden_tolerance(
    make_settings: Callable[..., Settings],
) -> None:
    """One golden slice 0.04 worse, the others unchanged: within the golden slices' 0.05 by default;
    blocked, and named, once golden_tolerance is 0.01 (its slices then held to slice_tolerance 0.03)."""
    golden = scored_set("golden", 5, {"north": 0.0, "south": 0.0, "west": -0.04}, rows={"west": 30_000})
    holdout = scored_set("holdout", 6, {"north": 0.01, "south": 0.01})
    default = gate.evaluate(make_settings(), [golden, holdout])
    west = comparison(default, "golden", "region=west")
    assert west.low is not None and -0.05 < west.low < -0.03, west
    assert (west.tolerance, west.status) == (0.05, "ok")
    assert default.checks[gate.SLICE_CHECK].passed
    strict = gate.evaluate(make_settings(gate={"golden_tolerance": 0.01}), [golden, holdout])
    west = comparison(strict, "golden", "region=west")
    assert (west.tolerance, west.status) == (0.03, "regression")
    assert "golden region=west" in strict.checks[gate.SLICE_CHECK].summary
    assert gate.SLICE_CHECK in strict.failed_checks
