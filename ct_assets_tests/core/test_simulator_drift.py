"""The simulator's drift modes: deterministic by seed, continuous across calls, and each doing what it says."""

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ct_assets.cli.main import main
from ct_assets.cli.parser import build_parser
from ct_assets.config import Settings
from ct_assets.errors import CtError
from ct_assets.tools.simulator import (
    DRIFT_MODES,
    SimulationOptions,
    generate_rows,
    parse_drift,
    simulate,
)

NOW = datetime(2025, 6, 1, 12, 0, 0)
MODES = ["seasonal", "sudden", "gradual", "poison"]
CHANGE_BATCH = POISON_BATCH = SEASON_BATCHES = 12  # fixed by the CLI contract, not read from the code


def stream(make: Callable[..., Settings], tag: str, batches: int, rows: int, **options: object) -> list[Path]:
    """`batches` delta files of a fresh stream in its own folders."""
    s = make(paths={"landing": f"{tag}/landing", "state": f"{tag}/state"})
    return simulate(s, SimulationOptions(batches=batches, rows=rows, **options), now=NOW)  # type: ignore[arg-type]


def frames(paths: list[Path]) -> list[pl.DataFrame]:
    return [pl.read_parquet(p) for p in paths]


def relation(frame: pl.DataFrame, feature: str) -> float:
    """Pearson correlation of the label with a feature, over the rows where both are known."""
    known = frame.select(pl.col(feature).fill_nan(None), "label").drop_nulls()
    return float(np.corrcoef(known[feature].to_numpy(), known["label"].to_numpy())[0, 1])


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_and_options_give_the_same_bytes(make_settings: Callable[..., Settings], mode: str) -> None:
    a = stream(make_settings, "a", 13, 200, seed=4, drift=mode)
    b = stream(make_settings, "b", 13, 200, seed=4, drift=mode)
    assert [p.name for p in a] == [p.name for p in b]
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    other = stream(make_settings, "c", 13, 200, seed=5, drift=mode)
    assert all(p.read_bytes() != q.read_bytes() for p, q in zip(a, other, strict=True))


@pytest.mark.parametrize("mode", MODES)
def test_the_stream_continues_across_calls(make_settings: Callable[..., Settings], mode: str) -> None:
    """One call of 14 batches and 14 calls of one batch number the batches alike, so they hold the same
    rows; only the event times depend on when the calls were made."""
    whole = frames(stream(make_settings, "whole", 14, 300, seed=3, drift=mode))
    s = make_settings(paths={"landing": "parts/landing", "state": "parts/state"})
    one_by_one = [
        simulate(
            s, SimulationOptions(batches=1, rows=300, seed=3, drift=mode), now=NOW + timedelta(minutes=i)
        )[0]
        for i in range(14)
    ]
    assert [p.name[:12] for p in one_by_one] == [f"delta_{b:06d}" for b in range(1, 15)]
    for x, y in zip(whole, frames(one_by_one), strict=True):
        assert x.drop("event_time").equals(y.drop("event_time"), null_equal=True)


def test_poison_flips_sixty_percent_of_batch_12_and_nothing_else(
    make_settings: Callable[..., Settings],
) -> None:
    clean = frames(stream(make_settings, "clean", 13, 2000, seed=8, drift="none"))
    poisoned = frames(stream(make_settings, "poison", 13, 2000, seed=8, drift="poison"))
    for batch, (c, p) in enumerate(zip(clean, poisoned, strict=True), start=1):
        assert c.drop("label").equals(p.drop("label"), null_equal=True)  # only labels may differ
        known = c["label"].is_not_null() & p["label"].is_not_null()
        assert known.sum() > 1900
        flipped = (c["label"].filter(known) != p["label"].filter(known)).mean()
        if batch == POISON_BATCH:
            assert flipped == pytest.approx(0.6, abs=0.02)
        else:
            assert flipped == 0
    # the flips contradict the features: fewer support calls now go with more churn
    assert relation(clean[POISON_BATCH - 1], "support_calls") > 0.15
    assert relation(poisoned[POISON_BATCH - 1], "support_calls") < -0.1


def test_sudden_changes_the_concept_from_batch_12_on(make_settings: Callable[..., Settings]) -> None:
    clean = frames(stream(make_settings, "clean", 14, 10_000, seed=6, drift="none"))
    sudden = frames(stream(make_settings, "sudden", 14, 10_000, seed=6, drift="sudden"))
    for batch, (c, s) in enumerate(zip(clean, sudden, strict=True), start=1):
        assert c.drop("label").equals(s.drop("label"), null_equal=True)  # the features never change
        changed = (c["label"] != s["label"]).mean()
        if batch < CHANGE_BATCH:
            assert changed == 0
        else:
            assert changed > 0.05  # the same draws, another probability: some labels differ
    by_batch = {b: sudden[b - 1] for b in (10, 11, 12, 13)}
    for feature in ("usage_hours", "tenure_months"):
        r = {b: relation(f, feature) for b, f in by_batch.items()}
        assert abs(r[11] - r[10]) < 0.06, (feature, r)
        assert abs(r[13] - r[12]) < 0.06, (feature, r)
        assert r[12] - r[11] > 0.1, (feature, r)  # heavy users start to churn; tenure stops protecting


def test_seasonal_relation_has_a_period_of_12_batches(make_settings: Callable[..., Settings]) -> None:
    files = frames(stream(make_settings, "season", 19, 10_000, seed=2, drift="seasonal"))
    usage = {b: relation(files[b - 1], "usage_hours") for b in (1, 7, 13, 19)}
    spend = {b: relation(files[b - 1], "monthly_spend") for b in (4, 10, 16)}
    assert abs(usage[13] - usage[1]) < 0.06 and abs(usage[19] - usage[7]) < 0.06, usage
    assert usage[1] - usage[7] > 0.3 and usage[13] - usage[19] > 0.3, usage  # half a year: reversed
    assert abs(spend[16] - spend[4]) < 0.06 and spend[4] - spend[10] > 0.25, spend
    rates = [f["label"].mean() for f in files[:SEASON_BATCHES]]
    assert max(rates) - min(rates) > 0.05  # type: ignore[operator]  # the positive rate moves too


def test_seasonal_labels_repeat_exactly_a_year_later() -> None:
    """Given the same draws, batch k and k + 12 give the same labels: the relation is the same function."""
    opts = SimulationOptions(batches=1, rows=2000, seed=1, drift="seasonal")

    def labels(batch: int) -> np.ndarray:
        return generate_rows(np.random.default_rng(99), 2000, opts, batch=batch)["label"]

    for k in range(1, SEASON_BATCHES + 1):
        assert np.array_equal(labels(k), labels(k + SEASON_BATCHES))
        assert np.array_equal(labels(k), labels(k + 3 * SEASON_BATCHES))
        assert (labels(k) != labels(k + SEASON_BATCHES // 2)).mean() > 0.05


def test_gradual_moves_the_feature_means_monotonically(make_settings: Callable[..., Settings]) -> None:
    files = frames(stream(make_settings, "gradual", 24, 3000, seed=5, drift="gradual"))
    at = [files[b - 1] for b in (1, 7, 13, 19, 24)]
    usage = [f["usage_hours"].fill_nan(None).mean() for f in at]
    tenure = [f["tenure_months"].mean() for f in at]
    spend = [f["monthly_spend"].mean() for f in at]
    web = [(f["channel"] == "web").mean() for f in at]
    for rising in (usage, spend, web):
        assert all(x < y for x, y in itertools.pairwise(rising)), rising
    assert all(x > y for x, y in itertools.pairwise(tenure)), tenure
    assert usage[-1] - usage[0] > 25  # type: ignore[operator]
    plain = frames(stream(make_settings, "plain", 1, 3000, seed=5))
    assert plain[0].drop("event_time").equals(files[0].drop("event_time"), null_equal=True)  # no drift yet
    limits = {f.name: f for f in make_settings().features if f.kind == "numeric"}
    for frame in files:
        for name, f in limits.items():
            col = frame[name].fill_nan(None).drop_nulls()
            assert f.min <= col.min() and col.max() <= f.max  # type: ignore[operator]


def test_drift_option_reads_a_number_or_a_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_drift("0.5") == 0.5
    assert parse_drift("0") == 0.0
    assert parse_drift(" Sudden ") == "sudden"
    assert build_parser().parse_args(["simulate", "--batches", "1", "--rows", "5"]).drift == "0"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for mode in DRIFT_MODES:
        assert mode in help_text
    assert "a number:" in help_text and "a word:" in help_text
    assert SimulationOptions(1, 1, drift=0.5).drift_mode == "none"
    assert SimulationOptions(1, 1, drift="poison").drift_strength == 0.0


@pytest.mark.parametrize("drift", ["weekly", "", "nan", "inf", "-1"])
def test_bad_drift_is_refused_in_one_line(settings: Settings, drift: str) -> None:
    with pytest.raises(CtError) as info:
        simulate(settings, SimulationOptions(batches=1, rows=10, drift=parse_drift(drift)), now=NOW)
    assert "\n" not in str(info.value) and "--drift" in str(info.value)
    assert not settings.paths.landing.exists() or not list(settings.paths.landing.iterdir())


def test_command_line_lands_a_mode_and_keeps_numeric_drift(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    s = make_settings()
    assert main(["simulate", "--batches", "2", "--rows", "100", "--seed", "3", "--drift", "sudden"]) == 0
    assert main(["simulate", "--batches", "1", "--rows", "100", "--seed", "3", "--drift", "0.5"]) == 0
    printed = [Path(line) for line in capsys.readouterr().out.splitlines()]
    assert [p.name[:12] for p in printed] == ["delta_000001", "delta_000002", "delta_000003"]
    expected = generate_rows(np.random.default_rng([3, 3]), 100, SimulationOptions(1, 100, 3, drift=0.5))
    landed = pl.read_parquet(printed[2])
    assert np.array_equal(landed["tenure_months"].to_numpy(), expected["tenure_months"])
    assert all(p.parent == s.paths.landing for p in printed)
    assert main(["simulate", "--batches", "1", "--rows", "10", "--drift", "weekly"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "seasonal, sudden, gradual, poison" in err
