"""`ct-assets cycle` killed while the champion's predictions of the new rows are being appended: nothing
of them is left half-written, and the next ingest run scores the rows the dead one missed (with the
rows that landed before the champion existed), each exactly once."""

from pathlib import Path

import pytest

from ct_assets_tests.robustness.crashes.harness import (
    BASE_FILES,
    BASE_ROWS,
    INGEST_ONLY,
    NEW_FILES,
    NEW_ROWS,
    Bases,
    assert_recovered,
    check_invariants,
    copy_of,
    land,
    live_runs,
    locks_free,
)

pytestmark = pytest.mark.slow


def test_kill_while_appending_predictions(bases: Bases, tmp_path: Path) -> None:
    p = copy_of(bases.waiting, tmp_path)
    only = p.root / INGEST_ONLY
    p.killed("cycle", "--json", failpoint="predictions.before_commit", config=only)
    dead = live_runs(p)
    assert list(dead.values()) == ["ingest_job"], dead
    assert locks_free(p)
    # The files went in (raw_deltas committed before the predictions step); no prediction did.
    after_kill = check_invariants(p, bases, ingested=set(bases.landed))
    assert after_kill["rows"] == BASE_FILES * BASE_ROWS + NEW_FILES * NEW_ROWS
    assert p.value("SELECT count(*) FROM predictions") == 0

    new = land(p, 1, 1000, seed=3)  # the next ingest run comes with the next file
    out, proc, _ = p.cycle(config=only)
    assert_recovered(p, proc, set(dead))
    assert out["ingested_files"] == 1
    total = after_kill["rows"] + 1000
    assert p.rows(
        "SELECT role, model_version, count(*), count(DISTINCT row_id), count(DISTINCT _batch_id) FROM predictions "
        "GROUP BY ALL"
    ) == [("champion", "v0001", total, total, BASE_FILES + NEW_FILES + len(new))]
