"""`ct-assets cycle` killed in the first waiting file's ingest transaction, before or after its commit: the
rerun ingests each file once, a committed file found again is logged as a duplicate, and the landing
sensor is not held up by the dead run."""

from pathlib import Path

import dagster as dg
import pytest

from ct_assets_tests.robustness.crashes.harness import (
    BASE_FILES,
    BASE_ROWS,
    INGEST_ONLY,
    NEW_FILES,
    NEW_ROWS,
    PROMPT_SECONDS,
    Bases,
    assert_recovered,
    check_invariants,
    copy_of,
    live_runs,
    locks_free,
    sha256,
    tick,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("point", ["ingest.before_commit", "ingest.after_commit"])
def test_kill_during_ingest(bases: Bases, tmp_path: Path, point: str) -> None:
    """Killed in the first waiting file's transaction (before or after its commit): the rerun ingests
    each file once; a committed file found again in the landing folder is logged as a duplicate."""
    p = copy_of(bases.waiting, tmp_path)
    only = p.root / INGEST_ONLY
    first = p.landing / bases.waiting_files[0]
    first_hash = sha256(first)

    p.killed("cycle", "--json", failpoint=point, config=only)
    dead = live_runs(p)
    assert list(dead.values()) == ["ingest_job"], dead
    assert locks_free(p)
    committed = point == "ingest.after_commit"
    left = check_invariants(p, bases, ingested=bases.old | ({first_hash} if committed else set()))
    assert left["rows"] == BASE_FILES * BASE_ROWS + (NEW_ROWS if committed else 0)
    assert first.exists(), "the file left the landing folder although the process died before moving it"
    assert left["champion"] == "v0001"

    if committed:
        # The landing sensor is not held up by the dead run: it requests an ingest run (and marks the
        # dead one failed).
        request = tick(p, "landing_sensor")
        assert isinstance(request, dg.RunRequest), request
        assert_recovered(p, None, set(dead))
    out, proc, seconds = p.cycle(config=only)
    assert_recovered(p, None if committed else proc, set(dead))
    after = check_invariants(p, bases, ingested=set(bases.landed))
    assert after["rows"] == BASE_FILES * BASE_ROWS + NEW_FILES * NEW_ROWS
    assert out["ingested_files"] == NEW_FILES - committed, out
    assert out["duplicate_files"] == int(committed), out
    duplicates = p.value(
        "SELECT count(*) FROM ingest_log WHERE status = 'duplicate' AND file_hash = ?", [first_hash]
    )
    assert duplicates == int(committed)
    assert not [f for f in p.landing.iterdir() if not f.name.startswith(".")]
    assert (p.data / "archive" / first.name).is_file()
    assert after["champion"] == "v0001"
    assert seconds < PROMPT_SECONDS
    print(
        f"\n{point}: left rows={left['rows']}; rerun {out['ingested_files']} ingested, "
        f"{out['duplicate_files']} duplicate, rows={after['rows']} in {seconds:.1f} s"
    )
