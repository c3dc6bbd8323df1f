"""The synthetic stream: one continuous stream across calls, options that change the data, bad options."""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.errors import CtError
from ct_assets.tools.simulator import STATE_FILE, SimulationOptions, simulate

NOW = datetime(2025, 6, 1, 12, 0, 0)


def read(paths: list[Path]) -> list[pl.DataFrame]:
    return [
        pl.read_parquet(p) if p.suffix == ".parquet" else pl.read_csv(p, try_parse_dates=True) for p in paths
    ]


def test_files_land_complete_with_the_default_schema(settings: Settings) -> None:
    paths = simulate(settings, SimulationOptions(batches=2, rows=300, seed=1), now=NOW)
    assert [p.parent for p in paths] == [settings.paths.landing] * 2
    assert sorted(p.name for p in settings.paths.landing.iterdir()) == sorted(p.name for p in paths)
    assert all(p.suffix == ".parquet" for p in paths)
    for frame in read(paths):
        assert frame.columns == settings.stored_columns
        assert frame.height == 300
        assert frame["row_id"].dtype == pl.Int64
        assert frame["event_time"].dtype == pl.Datetime("us")
        assert set(frame["region"].unique()) <= set(settings.feature("region").categories or ())
        assert set(frame["label"].drop_nulls().unique()) <= {0, 1}
        assert frame["tenure_months"].null_count() == 0


def test_successive_calls_continue_one_stream(settings: Settings) -> None:
    calls = [
        simulate(settings, SimulationOptions(batches=2, rows=200, seed=1), now=NOW),
        simulate(settings, SimulationOptions(batches=1, rows=150, seed=1), now=NOW + timedelta(seconds=30)),
        simulate(settings, SimulationOptions(batches=3, rows=100, seed=2), now=NOW + timedelta(minutes=5)),
    ]
    names = [p.name for call in calls for p in call]
    assert len(set(names)) == len(names) == 6
    frames = read([p for call in calls for p in call])
    ids = pl.concat([f["row_id"] for f in frames])
    assert ids.to_list() == list(range(1, 1 + 2 * 200 + 150 + 3 * 100))
    previous_last = None
    for call_frames, now in zip(
        (frames[:2], frames[2:3], frames[3:]),
        (NOW, NOW + timedelta(seconds=30), NOW + timedelta(minutes=5)),
        strict=True,
    ):
        for f in call_frames:
            times = f["event_time"]
            assert times.is_sorted()
            assert times.max() <= now  # never in the future of its call
            if previous_last is not None:
                assert times.min() > previous_last  # strictly after everything written before
            previous_last = times.max()
    assert (settings.paths.state / STATE_FILE).is_file()


def test_real_clock_calls_never_write_the_future(settings: Settings) -> None:
    first = read(simulate(settings, SimulationOptions(batches=2, rows=100, seed=3)))
    second = read(simulate(settings, SimulationOptions(batches=1, rows=100, seed=3)))
    now = datetime.now(UTC).replace(tzinfo=None)
    assert max(f["event_time"].max() for f in first + second) <= now
    assert second[0]["event_time"].min() > first[-1]["event_time"].max()
    assert second[0]["row_id"].min() == first[-1]["row_id"].max() + 1


def test_same_seed_same_stream(make_settings: Callable[..., Settings], project: Path) -> None:
    a = make_settings(paths={"landing": "a/landing", "state": "a/state"})
    b = make_settings(paths={"landing": "b/landing", "state": "b/state"})
    opts = SimulationOptions(batches=2, rows=200, seed=9)
    fa, fb = read(simulate(a, opts, now=NOW)), read(simulate(b, opts, now=NOW))
    assert all(x.equals(y, null_equal=True) for x, y in zip(fa, fb, strict=True))
    other = read(
        simulate(
            make_settings(paths={"landing": "c/l", "state": "c/s"}),
            SimulationOptions(2, 200, seed=10),
            now=NOW,
        )
    )
    assert not other[0].drop("event_time").equals(fa[0].drop("event_time"), null_equal=True)


def one_batch(make_settings: Callable[..., Settings], tag: str, **options: object) -> pl.DataFrame:
    s = make_settings(paths={"landing": f"{tag}/landing", "state": f"{tag}/state"})
    opts = SimulationOptions(batches=1, rows=4000, seed=5, **options)  # type: ignore[arg-type]
    return read(simulate(s, opts, now=NOW))[0]


def test_drift_shifts_the_features(make_settings: Callable[..., Settings]) -> None:
    plain = one_batch(make_settings, "plain")
    drifted = one_batch(make_settings, "drift", drift=1.0)
    assert drifted["support_calls"].mean() > plain["support_calls"].mean() + 1.0
    assert drifted["tenure_months"].mean() < plain["tenure_months"].mean() * 0.8
    usage = [f["usage_hours"].fill_nan(None).mean() for f in (plain, drifted)]  # missing usage is NaN
    assert usage[1] < usage[0] - 15
    assert drifted["row_id"].equals(plain["row_id"])


def test_label_noise_flips_labels(make_settings: Callable[..., Settings]) -> None:
    plain = one_batch(make_settings, "plain", unlabelled=0.0)
    noisy = one_batch(make_settings, "noisy", label_noise=0.3, unlabelled=0.0)
    flipped = (plain["label"] != noisy["label"]).mean()
    assert 0.25 < flipped < 0.35
    # features come from the same draws: only the labels changed
    assert plain["tenure_months"].equals(noisy["tenure_months"])


def test_drift_in_one_slice_changes_labels_there_only(make_settings: Callable[..., Settings]) -> None:
    plain = one_batch(make_settings, "plain", unlabelled=0.0)
    drifted = one_batch(make_settings, "slice", drift_slice="region=west", unlabelled=0.0)
    changed = plain["label"] != drifted["label"]
    west = plain["region"] == "west"
    assert not changed.filter(~west).any()
    assert changed.filter(west).mean() > 0.2


def test_unlabelled_share_and_csv_format(make_settings: Callable[..., Settings]) -> None:
    s = make_settings()
    paths = simulate(
        s, SimulationOptions(batches=1, rows=2000, seed=1, unlabelled=0.25, file_format="csv"), now=NOW
    )
    assert paths[0].suffix == ".csv"
    frame = read(paths)[0]
    assert frame.columns == s.stored_columns
    assert 0.2 < frame["label"].null_count() / frame.height < 0.3


@pytest.mark.parametrize(
    "options",
    [
        {"batches": 0},
        {"rows": 0},
        {"batches": -1},
        {"drift": -0.1},
        {"drift": 5.5},
        {"label_noise": 0.6},
        {"label_noise": -0.1},
        {"unlabelled": 1.0},
        {"file_format": "json"},
        {"drift_slice": "country=fr"},
        {"drift_slice": "region"},
    ],
    ids=str,
)
def test_bad_options_raise_ct_error(settings: Settings, options: dict) -> None:
    opts = SimulationOptions(**{"batches": 1, "rows": 10, **options})
    with pytest.raises(CtError) as info:
        simulate(settings, opts, now=NOW)
    assert "\n" not in str(info.value)
    landing = settings.paths.landing
    assert not landing.exists() or list(landing.iterdir()) == []  # nothing half-written


def test_other_schema_is_refused(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(columns={"slices": []}, features={"amount": {"kind": "numeric"}})
    with pytest.raises(CtError, match="default schema"):
        simulate(s, SimulationOptions(batches=1, rows=10), now=NOW)


def test_unreadable_state_is_refused(settings: Settings) -> None:
    settings.paths.state.mkdir(parents=True)
    (settings.paths.state / STATE_FILE).write_text("{not json")
    with pytest.raises(CtError, match="delete it"):
        simulate(settings, SimulationOptions(batches=1, rows=10), now=NOW)


def test_label_delay_lands_each_batchs_labels_as_a_label_file_n_batches_later(
    make_settings: Callable[..., Settings],
) -> None:
    """`--label-delay N`: batch b lands without the labels of (a share of) its labelled rows, and those land
    as a label file right after batch b + N, along the stream across calls; the same seed gives the same
    bytes, and the rows' other values are those of the stream without a delay."""
    settings = make_settings(columns={"label_time": "labelled_at"})
    opts = SimulationOptions(batches=3, rows=400, seed=4, label_delay=2, late_share=0.5)
    first = simulate(settings, opts, now=NOW)
    second = simulate(
        settings, SimulationOptions(**{**opts.__dict__, "batches": 1}), now=NOW + timedelta(hours=1)
    )
    assert ["_".join(p.stem.split("_")[:2]) for p in [*first, *second]] == [
        "delta_000001",
        "delta_000002",
        "delta_000003",
        "labels_000001",
        "delta_000004",
        "labels_000002",
    ]
    assert (settings.paths.state / "simulator_labels" / "labels_000003.parquet").is_file()  # due with batch 5
    delta, labels = pl.read_parquet(first[0]), pl.read_parquet(first[3])
    assert labels.columns == ["row_id", "label", "labelled_at"]
    assert labels["row_id"].is_in(delta.filter(pl.col("label").is_null())["row_id"].implode()).all()
    assert 0.4 < labels.height / 400 < 0.6  # half the labelled rows, the rest land with their rows
    assert (labels["labelled_at"] <= NOW).all()

    # The same stream without a delay, in a stream of its own: the same rows and labels.
    plain = make_settings(paths={"landing": "plain/landing", "state": "plain/state"})
    plain_paths = simulate(plain, SimulationOptions(batches=1, rows=400, seed=4), now=NOW)
    undelayed = pl.read_parquet(plain_paths[0])
    known = delta.join(labels.select("row_id", "label"), on="row_id", how="left").with_columns(
        pl.coalesce("label", "label_right").alias("label")
    )
    assert known.drop("label_right", "event_time").equals(undelayed.drop("event_time"))


def test_label_delay_is_deterministic_by_seed(make_settings: Callable[..., Settings]) -> None:
    bytes_of = []
    for _ in range(2):
        s = make_settings()
        for folder in (s.paths.landing, s.paths.state):
            if folder.exists():
                for p in sorted(folder.rglob("*"), reverse=True):
                    p.unlink() if p.is_file() else p.rmdir()
        paths = simulate(s, SimulationOptions(batches=3, rows=300, seed=9, label_delay=1), now=NOW)
        bytes_of.append([p.read_bytes() for p in paths])
    assert bytes_of[0] == bytes_of[1] and len(bytes_of[0]) == 5
    with pytest.raises(CtError, match="--label-delay must be at least 0"):
        simulate(make_settings(), SimulationOptions(batches=1, rows=10, label_delay=-1), now=NOW)
