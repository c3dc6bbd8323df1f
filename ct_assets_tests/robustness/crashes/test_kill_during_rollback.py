"""`ct-assets registry rollback` killed around its commit: the champion is the old or the new one, never
none; run again, it rolls back or says it already did, with one rollback in the ledger."""

import time
from pathlib import Path

import pytest

from ct_assets_tests.robustness.crashes.harness import (
    PROMPT_SECONDS,
    Bases,
    assert_recovered,
    check_invariants,
    copy_of,
    live_runs,
    locks_free,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("point", ["promote.before_commit", "promote.after_commit"])
def test_kill_during_rollback(bases: Bases, promoted: Path, tmp_path: Path, point: str) -> None:
    """`registry rollback` killed around its commit: the champion is v0002 or v0001, never none; run
    again, it rolls back, or says v0001 already is the champion, and the ledger holds one rollback."""
    p = copy_of(promoted, tmp_path)
    p.killed("registry", "rollback", "--to", "v0001", "--reason", "crash test", failpoint=point)
    dead = live_runs(p)
    assert list(dead.values()) == ["registry_job"], dead
    assert locks_free(p)
    committed = point == "promote.after_commit"
    assert check_invariants(p, bases, ingested=set(bases.landed))["champion"] == (
        "v0001" if committed else "v0002"
    )

    started = time.monotonic()
    proc = p.run("registry", "rollback", "--to", "v0001", "--reason", "crash test")
    seconds = time.monotonic() - started
    assert seconds < PROMPT_SECONDS
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    if committed:
        assert proc.returncode == 1, proc.stderr
        assert "v0001 is already the champion" in proc.stderr, proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
    assert_recovered(p, proc, set(dead))
    assert check_invariants(p, bases, ingested=set(bases.landed))["champion"] == "v0001"
    assert p.value("SELECT count(*) FROM ledger WHERE action = 'rolled_back'") == 1
    print(f"\nrollback {point}: rerun rc={proc.returncode} in {seconds:.1f} s: {proc.stderr.strip()[-200:]}")
