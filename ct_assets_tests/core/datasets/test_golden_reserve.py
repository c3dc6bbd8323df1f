"""Golden versions from the reserve: reserve rows only, never one equal in content to a row outside the
reserve (a model may have trained on that one), refreshed by `ensure_golden` only when [dataset]
golden_refresh of its rows would change (frozen at 0), always without the rows of batches held back
since, each replacement recorded in the ledger with what changed, and every version's rows kept.

The expected golden rows are computed here in SQL from the values themselves."""

from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core.datasets.golden import GoldenInfo, active_golden, ensure_golden, read_golden
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.core.monitoring import evidence
from ct_assets.store.schema import content_columns
from ct_assets.store.warehouse import connect_writer, transaction
from ct_assets_tests.core.datasets.support import NOW, fill, query, use
from ct_assets_tests.helpers.data import frames_with_twins, labelled_frame
from ct_assets_tests.helpers.warehouse import ledger

CONFIG = "[retrain]\nmin_new_rows = 1000\n[dataset]\ngolden_fraction = 0.2\n"


@pytest.fixture(scope="module")
def twins_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fill(tmp_path_factory.mktemp("twins"), CONFIG, frames_with_twins(NOW))


@pytest.fixture(scope="module")
def two_batches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two batches of 3000 rows, a day apart."""
    frames = [labelled_frame(3000, seed=s, end=NOW - timedelta(days=3 - s)) for s in (1, 2)]
    return fill(tmp_path_factory.mktemp("two"), CONFIG, frames)


def eligible(s: Settings, held: tuple[int, ...] = ()) -> set[int]:
    """Ids of the reserve's labelled rows in the training window, outside held-back batches, with no row
    outside the reserve equal to them in event time and every feature: what a golden version may hold
    (all of it, while the reserve is under golden_max_rows)."""
    equal = " AND ".join(f'o."{c}" IS NOT DISTINCT FROM r."{c}"' for c in content_columns(s))
    (newest,) = query(s, "SELECT max(event_time) FROM raw_deltas WHERE label IS NOT NULL")[0]
    start = newest - timedelta(days=s.dataset.window_days)
    not_held = f"AND r._batch_id NOT IN ({', '.join(map(str, held))})" if held else ""
    rows = query(
        s,
        f"""SELECT r.row_id FROM raw_deltas r WHERE r._reserve AND r.label IS NOT NULL
            AND r.event_time >= '{start}' {not_held}
            AND NOT EXISTS (SELECT 1 FROM raw_deltas o WHERE NOT o._reserve AND {equal})""",
    )
    return {int(r[0]) for r in rows}


def golden_ids(s: Settings, golden_hash: str) -> set[int]:
    return {r[0] for r in query(s, f"SELECT row_id FROM golden_rows WHERE _golden_hash = '{golden_hash}'")}


def ensure(s: Settings) -> tuple[GoldenInfo, bool]:
    return ensure_golden(s, rebuild=False, reason="", run_id="run")


def land(s: Settings, frame: pl.DataFrame) -> None:
    frame.write_parquet(s.paths.landing / f"later_{frame['row_id'][0]}.parquet")
    report = ingest_landed_files(s, now=NOW)
    assert [f.status for f in report.files] == ["ingested"], [f.reason for f in report.files]


def hold_back(s: Settings, batch_id: int, status: str = "suspect") -> None:
    with connect_writer(s) as con, transaction(con):
        d = evidence.Decision(batch_id, status, "v0001", 1000, 0.4, 0.75, 0.01, "test")
        evidence.record(con, d, metric="roc_auc", now=utc_now())


def test_a_golden_version_holds_reserve_rows_without_twins_outside_the_reserve(
    twins_data: Path, make_settings
) -> None:
    s = use(twins_data, make_settings(dataset={"golden_fraction": 0.2}))
    golden, built = ensure(s)
    assert built and golden.changes["previous"] is None
    ids = golden_ids(s, golden.golden_hash)
    assert len(ids) == golden.rows
    reserve = {r[0] for r in query(s, "SELECT row_id FROM raw_deltas WHERE _reserve")}
    assert ids <= reserve
    assert ids == eligible(s)
    # the warehouse holds labelled reserve rows with a twin outside the reserve: none of them is golden
    equal = " AND ".join(f'o."{c}" IS NOT DISTINCT FROM r."{c}"' for c in content_columns(s))
    twins = {
        r[0]
        for r in query(
            s,
            f"""SELECT r.row_id FROM raw_deltas r WHERE r._reserve AND r.label IS NOT NULL
                AND EXISTS (SELECT 1 FROM raw_deltas o WHERE NOT o._reserve AND {equal})""",
        )
    }
    assert len(twins) > 20
    assert ids.isdisjoint(twins)
    assert ledger(s) == []  # a first build replaces nothing: no ledger row


def test_the_active_version_is_kept_below_golden_refresh_and_replaced_from_it(
    two_batches: Path, make_settings
) -> None:
    """golden_refresh 0.1: a new batch adding under a tenth of the rows keeps the active version; one
    that brings the change (counted against the active version) to a tenth or more makes a new one,
    recorded as `golden_refreshed` with the old and new hashes and the rows added and removed."""
    s = use(two_batches, make_settings(dataset={"golden_fraction": 0.2, "golden_refresh": 0.1}))
    first, _ = ensure(s)
    assert golden_ids(s, first.golden_hash) == eligible(s)

    land(s, labelled_frame(200, seed=3, end=NOW - timedelta(hours=20)))
    candidate = eligible(s)
    changed = len(candidate ^ golden_ids(s, first.golden_hash))
    assert 0 < changed < 0.1 * len(candidate), (changed, len(candidate))
    kept, built = ensure(s)
    assert (kept.golden_hash, built) == (first.golden_hash, False)
    assert [g[0] for g in query(s, "SELECT golden_hash FROM golden_versions")] == [first.golden_hash]

    land(s, labelled_frame(600, seed=4, end=NOW - timedelta(hours=2)))
    candidate = eligible(s)
    old = golden_ids(s, first.golden_hash)
    assert len(candidate ^ old) >= 0.1 * len(candidate)  # the two batches together reach a tenth
    new, built = ensure(s)
    assert built and new.golden_hash != first.golden_hash
    assert golden_ids(s, new.golden_hash) == candidate
    with connect_writer(s) as con:
        assert active_golden(con).golden_hash == new.golden_hash  # type: ignore[union-attr]
    (entry,) = ledger(s)
    assert entry.action == "golden_refreshed"
    assert entry.data_hash == new.golden_hash and entry.version is None
    assert entry.reason == "refreshed: the reserve moved"
    assert entry.metrics == {
        "old_golden_hash": first.golden_hash,
        "new_golden_hash": new.golden_hash,
        "previous": first.golden_hash,
        "rows_added": len(candidate - old),
        "rows_removed": len(old - candidate),
    }
    assert entry.metrics["rows_added"] > 0


def test_a_version_is_replaced_when_the_window_moves_past_its_rows(two_batches: Path, make_settings) -> None:
    """A short window: the newest batch moves it past the oldest batch, whose golden rows are removed."""
    s = use(two_batches, make_settings(dataset={"golden_fraction": 0.2, "window_days": 1.5}))
    first, _ = ensure(s)
    old = golden_ids(s, first.golden_hash)
    land(s, labelled_frame(300, seed=5, end=NOW - timedelta(hours=1)))
    new, built = ensure(s)
    assert built
    candidate = golden_ids(s, new.golden_hash)
    assert candidate == eligible(s)
    (entry,) = ledger(s)
    assert (entry.metrics["rows_added"], entry.metrics["rows_removed"]) == (
        len(candidate - old),
        len(old - candidate),
    )
    assert entry.metrics["rows_removed"] > 0


def test_golden_refresh_0_keeps_the_version_frozen(two_batches: Path, make_settings) -> None:
    s = use(two_batches, make_settings(dataset={"golden_fraction": 0.2, "golden_refresh": 0.0}))
    first, _ = ensure(s)
    land(s, labelled_frame(3000, seed=6, end=NOW - timedelta(hours=1)))
    assert len(eligible(s) ^ golden_ids(s, first.golden_hash)) > 0.3 * len(eligible(s))
    kept, built = ensure(s)
    assert (kept.golden_hash, built) == (first.golden_hash, False)
    assert ledger(s) == []
    # an explicit rebuild still makes a new version, recorded as such
    rebuilt, built = ensure_golden(s, rebuild=True, reason="new product line", run_id="run")
    assert built and rebuilt.golden_hash != first.golden_hash
    (entry,) = ledger(s)
    assert (entry.action, entry.reason) == ("golden_rebuilt", "new product line")


@pytest.mark.parametrize("refresh", [0.1, 0.0])
def test_a_batch_held_back_since_leaves_the_golden_set(
    two_batches: Path, make_settings, refresh: float
) -> None:
    """Even frozen (golden_refresh 0), a version holding rows of a batch held back since is replaced by
    one without them; a refuted or excluded batch stays out of later versions too."""
    s = use(two_batches, make_settings(dataset={"golden_fraction": 0.2, "golden_refresh": refresh}))
    first, _ = ensure(s)
    in_batch_2 = {r[0] for r in query(s, "SELECT row_id FROM raw_deltas WHERE _batch_id = 2")}
    old = golden_ids(s, first.golden_hash)
    assert old & in_batch_2
    hold_back(s, 2)
    new, built = ensure(s)
    assert built
    ids = golden_ids(s, new.golden_hash)
    assert ids == eligible(s, held=(2,)) == old - in_batch_2
    (entry,) = ledger(s)
    assert entry.action == "golden_refreshed"
    assert (entry.metrics["rows_added"], entry.metrics["rows_removed"]) == (0, len(old & in_batch_2))
    # once out, a batch refuted later stays out: nothing changes, no new version
    hold_back(s, 2, "refuted")
    again, built = ensure(s)
    assert (again.golden_hash, built) == (new.golden_hash, False)
    # released, it may come back (when the change reaches golden_refresh; never when frozen)
    hold_back(s, 2, "released")
    back, built = ensure(s)
    assert built == (refresh > 0)
    assert golden_ids(s, back.golden_hash) == (old if refresh > 0 else ids)


def test_every_versions_rows_are_kept(two_batches: Path, make_settings) -> None:
    s = use(two_batches, make_settings(dataset={"golden_fraction": 0.2, "window_days": 1.5}))
    versions = []
    for seed in (7, 8):
        golden, _ = ensure(s)
        with connect_writer(s) as con:
            versions.append((golden, read_golden(con, s, golden.golden_hash, with_row_hashes=True)))
        land(s, labelled_frame(1000, seed=seed, end=NOW - timedelta(hours=9 - seed)))
    golden, built = ensure(s)
    assert built
    hashes = [g[0] for g in query(s, "SELECT golden_hash FROM golden_versions ORDER BY build_id")]
    assert hashes == [v.golden_hash for v, _ in versions] + [golden.golden_hash]
    assert len(set(hashes)) == 3
    with connect_writer(s) as con:
        for version, rows in versions:
            assert read_golden(con, s, version.golden_hash, with_row_hashes=True).equals(rows)
            assert rows.height == version.rows
    # each version's rows are still the warehouse's rows, unchanged
    (joined,) = query(
        s,
        "SELECT count(*) FROM golden_rows g JOIN raw_deltas r ON g.row_id = r.row_id AND g._row_hash = r._row_hash",
    )[0]
    assert joined == sum(v.rows for v, _ in versions) + golden.rows
