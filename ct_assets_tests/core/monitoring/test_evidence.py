"""Per-batch evidence (core.monitoring.evidence) on a hand-made history of decisions: the limit
max(z * spread, min_drop) around the champion's reference, a suspect confirmed by an off successor or
refuted by an in-range one, the reference restarting after a confirmed shift, what is not judged, which
batches are held back, a person's release and exclusion, and the sampling error of ROC AUC."""

import math
from collections.abc import Callable, Iterable

import numpy as np
import pytest

from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core.modeling.metrics import metric_value, roc_auc
from ct_assets.core.monitoring import evidence
from ct_assets.core.monitoring.evidence import BatchScore, Decision
from ct_assets.errors import RegistryError
from ct_assets.store.warehouse import connect_writer, init_warehouse, transaction

CHAMPION = "v0001"
ERR = 0.005  # a batch's own sampling error, below the history's spread unless a test says otherwise


def record(s: Settings, history: Iterable[tuple[int, str, float | None]], champion: str = CHAMPION) -> None:
    """Append (batch, status, value) decisions of `champion`, in order."""
    with connect_writer(s) as con, transaction(con):
        for batch, status, value in history:
            d = Decision(batch, status, champion, 2000, value, None, None, "history")
            evidence.record(con, d, metric=s.primary_metric, now=utc_now())


def judge(s: Settings, *scores: BatchScore, champion: str | None = CHAMPION, validation: float | None = 0.80):
    with connect_writer(s) as con:
        return evidence.judge(con, s, champion, validation, list(scores))


def score(batch: int, value: float, error: float = ERR, rows: int = 2000) -> BatchScore:
    return BatchScore(batch, rows, value, error)


def normal_history(values: list[float], first: int = 1) -> list[tuple[int, str, float | None]]:
    return [(first + i, "normal", v) for i, v in enumerate(values)]


def statuses(decisions: list[Decision]) -> list[tuple[int, str]]:
    return [(d.batch_id, d.status) for d in decisions]


# ------------------------------------------------------------------------------------------- the limit


@pytest.mark.parametrize(
    ("history", "error"),
    [
        ([0.80, 0.81, 0.79, 0.80, 0.82], ERR),  # z * spread 0.046 < min_drop: the limit is min_drop
        ([0.80, 0.84, 0.76, 0.80, 0.83, 0.77], ERR),  # z * spread 0.13: the spread decides
        ([0.80, 0.81, 0.79, 0.80, 0.82], 0.03),  # the batch's own sampling error exceeds the spread
    ],
    ids=["min_drop", "spread", "sampling error"],
)
def test_a_batch_is_suspect_exactly_when_its_drop_exceeds_the_limit(
    warehouse: Settings, history: list[float], error: float
) -> None:
    s = warehouse
    record(s, normal_history(history))
    ref = float(np.median(history))
    spread = max(float(np.std(history, ddof=1)), error)
    limit = max(s.holdback.z * spread, s.holdback.min_drop)
    inside, beyond = ref - 0.98 * limit, ref - 1.02 * limit
    (ok,) = judge(s, score(10, inside, error))
    assert (ok.status, ok.reference, ok.value) == ("normal", pytest.approx(ref), inside)
    assert ok.spread == pytest.approx(spread)
    assert f"limit {limit:.4f}" in ok.reason and f"median of {len(history)} batches" in ok.reason
    (bad,) = judge(s, score(10, beyond, error))
    assert bad.status == "suspect"
    better = judge(s, score(10, ref + 0.2, error))[0]  # better than ever is never suspect
    assert better.status == "normal"


def test_with_fewer_than_three_judged_batches_the_validation_figure_is_the_reference(
    warehouse: Settings,
) -> None:
    """Its spread is twice the batch's sampling error: limit max(4 * 2 * 0.01, 0.05) = 0.08."""
    s = warehouse
    record(s, normal_history([0.60, 0.60]))  # two batches are not a history yet
    (ok,) = judge(s, score(3, 0.80 - 0.079, 0.01))
    assert (ok.status, ok.reference, ok.spread) == ("normal", 0.80, 0.02)
    assert "its validation figure" in ok.reason
    (bad,) = judge(s, score(3, 0.80 - 0.081, 0.01))
    assert bad.status == "suspect"
    # and with no validation figure either, nothing to judge against
    (none,) = judge(s, score(3, 0.3), validation=None)
    assert none.status == "unjudged" and "no reference yet" in none.reason


def test_a_lower_is_better_metric_drops_upwards(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(**{"": {"primary_metric": "log_loss"}})
    init_warehouse(s)
    record(s, normal_history([0.40, 0.41, 0.39, 0.40]))
    assert judge(s, score(5, 0.30))[0].status == "normal"  # a lower log loss is better
    assert judge(s, score(5, 0.46))[0].status == "suspect"


def test_the_reference_is_this_champions_latest_included_batches(warehouse: Settings) -> None:
    """The median of the latest [holdback] history (8) batches judged normal, confirmed or released by
    this champion: older batches, held-back ones and another champion's do not count."""
    s = warehouse
    record(s, normal_history([0.60] * 10))  # older: outside the latest 8
    record(s, [(11, "refuted", 0.30), (12, "excluded", 0.30), (13, "suspect", 0.30)])
    record(s, normal_history([0.50] * 5, first=14), champion="v0000")
    record(s, [*normal_history([0.80] * 6, first=20), (26, "released", 0.80), (27, "normal", 0.80)])
    pending, d = judge(s, score(30, 0.78))
    assert (pending.batch_id, pending.status) == (13, "refuted")  # batch 30 is in range
    assert (d.status, d.reference) == ("normal", 0.80)
    assert "median of 8 batches" in d.reason


# ----------------------------------------------------------------------------- persistence decides


def test_an_off_successor_confirms_a_suspect_and_an_in_range_one_refutes_it(warehouse: Settings) -> None:
    s = warehouse
    record(s, normal_history([0.80, 0.81, 0.79, 0.80, 0.82]))
    (suspect,) = judge(s, score(6, 0.60))
    assert suspect.status == "suspect"
    with connect_writer(s) as con, transaction(con):
        evidence.record(con, suspect, metric="roc_auc", now=utc_now())

    shift = judge(s, score(7, 0.61))  # the next batch is off too: a shift
    assert statuses(shift) == [(6, "confirmed"), (7, "confirmed")]
    assert shift[0].value == 0.60 and "batch 7 is off too: a shift, trained on" in shift[0].reason

    poison = judge(s, score(7, 0.80))  # the next batch is back in range: batch 6 stays out
    assert statuses(poison) == [(6, "refuted"), (7, "normal")]
    assert "batch 7 is back in range: batch 6 stays excluded" in poison[0].reason

    # the same in one call, when both batches are judged together
    record(s, [(6, "normal", 0.80)])  # (batch 6 not pending any more)
    assert statuses(judge(s, score(8, 0.60), score(9, 0.61))) == [
        (8, "suspect"),
        (8, "confirmed"),
        (9, "confirmed"),
    ]
    assert statuses(judge(s, score(9, 0.80), score(8, 0.60))) == [
        (8, "suspect"),
        (8, "refuted"),
        (9, "normal"),
    ]


def test_an_unjudged_successor_leaves_the_suspect_pending(warehouse: Settings) -> None:
    s = warehouse
    record(s, [*normal_history([0.80, 0.81, 0.79, 0.80, 0.82]), (6, "suspect", 0.60)])
    (few,) = judge(s, score(7, math.nan, math.nan, rows=300))
    assert few.status == "unjudged"
    record(s, [(7, "unjudged", None)])
    with connect_writer(s) as con:
        assert evidence.held_batches(con) == [6]
    assert statuses(judge(s, score(8, 0.80))) == [(6, "refuted"), (8, "normal")]


def test_the_reference_restarts_after_a_confirmed_shift(warehouse: Settings) -> None:
    """Batches after a confirmed shift are judged against the shifted level, not the old one."""
    s = warehouse
    record(s, normal_history([0.80, 0.81, 0.79, 0.80, 0.82]))
    record(s, [(6, "confirmed", 0.62), (7, "confirmed", 0.63), (8, "normal", 0.64), (9, "normal", 0.62)])
    (d,) = judge(s, score(10, 0.63))
    assert (d.status, d.reference) == ("normal", 0.63)  # the median of batches 7 to 9
    assert "median of 3 batches" in d.reason
    assert judge(s, score(10, 0.55))[0].status == "suspect"  # off the new level


def test_the_batch_right_after_a_confirmed_shift_at_the_new_level_is_normal(warehouse: Settings) -> None:
    """README: 'both are confirmed and trained on, and the champion's reference restarts there'. A third
    batch at the confirmed, shifted level is not a new suspect."""
    s = warehouse
    record(s, normal_history([0.80, 0.81, 0.79, 0.80, 0.82]))
    record(s, [(6, "confirmed", 0.62), (7, "confirmed", 0.62)])
    (d,) = judge(s, score(8, 0.62), validation=0.80)
    assert d.status == "normal", d.reason
    assert d.reference == pytest.approx(0.62, abs=0.005), d.reason  # the shifted level, not the old one


# ------------------------------------------------------------------------------------ not judged


def test_too_few_labelled_rows_or_one_class_are_unjudged(warehouse: Settings) -> None:
    s = warehouse
    rng = np.random.default_rng(1)
    p = rng.random(2000)
    y = (rng.random(2000) < p).astype(int)
    few = evidence.score_batch(s, 3, y[:999], p[:999])
    one_class = evidence.score_batch(s, 4, np.zeros(2000, dtype=int), p)
    enough = evidence.score_batch(s, 5, y[:1000], p[:1000])
    assert math.isnan(few.value) and math.isnan(one_class.value) and few.rows_labelled == 999
    assert enough.value == pytest.approx(roc_auc(y[:1000], p[:1000]))
    record(s, normal_history([0.80, 0.81, 0.79, 0.80, 0.82], first=10))
    out = judge(s, few, one_class)
    assert statuses(out) == [(3, "unjudged"), (4, "unjudged")]
    assert "999 labelled rows or one class only (judged from 1000, both classes)" in out[0].reason
    assert out[0].value is None


def test_without_a_champion_or_with_hold_back_off_nothing_is_judged(
    warehouse: Settings, make_settings: Callable[..., Settings]
) -> None:
    (d,) = judge(warehouse, score(1, 0.1), champion=None, validation=None)
    assert (d.status, d.reason, d.champion) == ("unjudged", "no champion yet", None)
    off = make_settings(holdback={"enabled": False})
    (d,) = judge(off, score(1, 0.1))
    assert (d.status, d.value) == ("unjudged", 0.1)
    assert "hold-back is off" in d.reason


# ---------------------------------------------------------------------------------- held back, by hand


def test_held_batches_are_those_whose_latest_decision_is_suspect_refuted_or_excluded(
    warehouse: Settings,
) -> None:
    s = warehouse
    record(
        s,
        [
            (1, "normal", 0.8),
            (2, "suspect", 0.5),
            (3, "refuted", 0.5),
            (4, "excluded", None),
            (5, "confirmed", 0.6),
            (6, "released", None),
            (7, "unjudged", None),
            (8, "suspect", 0.5),
            (8, "confirmed", 0.5),
            (9, "refuted", 0.5),
            (9, "released", None),
            (10, "normal", 0.8),
            (10, "excluded", None),
        ],
    )
    with connect_writer(s) as con:
        assert evidence.held_batches(con) == [2, 3, 4, 10]
        latest = {r["batch_id"]: r["status"] for r in evidence.latest(con)}
    assert [latest[b] for b in range(1, 11)] == [
        "normal",
        "suspect",
        "refuted",
        "excluded",
        "confirmed",
        "released",
        "unjudged",
        "confirmed",
        "released",
        "excluded",
    ]


def ingested_batches(s: Settings, *batches: int) -> None:
    with connect_writer(s) as con, transaction(con):
        for b in batches:
            con.execute(
                "INSERT INTO ingest_log (entry_id, logged_at, file_name, file_hash, status, batch_id, rows, "
                "rows_labelled) VALUES (?, ?, ?, ?, 'ingested', ?, 1000, 990)",
                [b, utc_now(), f"delta_{b}.parquet", f"hash{b}", b],
            )


def decide(s: Settings, batch: int, action: str, reason: str) -> Decision:
    with connect_writer(s) as con, transaction(con):
        return evidence.decide_by_person(con, batch, action, reason, who="alice", now=utc_now())


def test_a_person_releases_or_excludes_a_batch(warehouse: Settings) -> None:
    s = warehouse
    ingested_batches(s, 1, 2)
    record(s, [(1, "refuted", 0.4)])
    released = decide(s, 1, "release", "labels checked by hand")
    assert (released.batch_id, released.status, released.rows_labelled) == (1, "released", 990)
    assert released.reason == "release by alice: labels checked by hand"
    excluded = decide(s, 2, "exclude", "known bad labels")
    assert excluded.status == "excluded"
    with connect_writer(s) as con:
        assert evidence.held_batches(con) == [2]
        rows = con.execute(
            "SELECT batch_id, status, actor FROM batch_decisions ORDER BY decision_id"
        ).fetchall()
    assert rows == [(1, "refuted", None), (1, "released", "alice"), (2, "excluded", "alice")]


@pytest.mark.parametrize(
    ("batch", "action", "reason", "message"),
    [
        (7, "release", "why", "batch 7 is not an ingested batch (see `ct-assets batch list`)"),
        (1, "exclude", "  ", "batch exclude needs a non-empty --reason"),
        (1, "forget", "why", "unknown batch action 'forget'; expected one of release, exclude"),
    ],
    ids=["unknown batch", "empty reason", "unknown action"],
)
def test_a_refused_decision_is_one_line_and_records_nothing(
    warehouse: Settings, batch: int, action: str, reason: str, message: str
) -> None:
    s = warehouse
    ingested_batches(s, 1)
    with pytest.raises(RegistryError) as err:
        decide(s, batch, action, reason)
    assert str(err.value) == message
    assert "\n" not in str(err.value)
    with connect_writer(s) as con:
        assert con.execute("SELECT count(*) FROM batch_decisions").fetchall() == [(0,)]


# ---------------------------------------------------------------------------------- sampling error


def bootstrap_sd(metric: str, y: np.ndarray, p: np.ndarray, resamples: int = 400) -> float:
    rng = np.random.default_rng(11)
    draws = [metric_value(metric, y[i], p[i], 0.5) for i in rng.integers(0, len(y), (resamples, len(y)))]
    return float(np.std(draws, ddof=1))


def informative(strength: float, n: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    y = (rng.random(n) < 0.3).astype(int)
    return y, 1 / (1 + np.exp(-(strength * (2 * y - 1) + rng.normal(0, 1.2, n))))


@pytest.mark.parametrize("strength", [0.3, 0.5, 0.8], ids=["auc 0.65", "auc 0.73", "auc 0.83"])
def test_the_hanley_mcneil_error_of_roc_auc_is_close_to_a_bootstrap(strength: float) -> None:
    y, p = informative(strength)
    hm = evidence.sampling_error("roc_auc", y, p, 0.5)
    boot = bootstrap_sd("roc_auc", y, p)
    assert 0.85 < hm / boot < 1.15, (roc_auc(y, p), hm, boot)


def test_the_hanley_mcneil_error_errs_on_the_wide_side_for_a_very_good_model() -> None:
    """Hanley and McNeil's exponential approximation overstates the error of binormal scores as the
    AUC nears 1 (here 0.97, by about 40 %): a wider limit, never a narrower one."""
    y, p = informative(1.6)
    ratio = evidence.sampling_error("roc_auc", y, p, 0.5) / bootstrap_sd("roc_auc", y, p)
    assert 1.0 < ratio < 1.6, ratio
    assert math.isnan(evidence.sampling_error("roc_auc", np.zeros(len(p), dtype=int), p, 0.5))


def test_the_sampling_error_of_another_metric_is_a_bootstrap() -> None:
    y, p = informative(0.8)
    got = evidence.sampling_error("log_loss", y, p, 0.5)
    assert got == evidence.sampling_error("log_loss", y, p, 0.5)  # a fixed seed
    assert 0.75 < got / bootstrap_sd("log_loss", y, p) < 1.25
