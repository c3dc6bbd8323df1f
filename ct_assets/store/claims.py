"""Exactly-once ingest with many writers (cluster mode): each landed file is claimed, by its content
hash, through a PostgreSQL primary key (table ingest_claims in [cluster] state_db), since DuckLake has
no UNIQUE and two `INSERT ... WHERE NOT EXISTS` both commit.

The protocol (store.pg holds the liveness locks):
1. claim: the row is new, or already this run's (a retried step), or held by a dead run (one whose
   liveness lock nobody holds: its process is gone) -> won. A `done` claim is never taken.
2. the file's rows and its ingest_log row are appended in one DuckLake transaction; a run that took a
   claim over finds the file in ingest_log when the dead run had committed, and appends nothing;
3. fence: the claim row is locked (SELECT ... FOR UPDATE) and checked to be still this run's before the
   DuckLake COMMIT, and marked done in the same PostgreSQL transaction right after it. A taker blocks
   on that row until the holder is done; a holder that lost its claim does not commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ct_assets.store import pg

WON, HELD, DONE = "won", "held", "done"

_CLAIM = """INSERT INTO ingest_claims AS c (file_hash, file_name, run_id) VALUES (%(h)s, %(f)s, %(r)s)
ON CONFLICT (file_hash) DO UPDATE SET run_id = EXCLUDED.run_id, claimed_at = now(),
    takeovers = c.takeovers + (c.run_id <> EXCLUDED.run_id)::int
  WHERE c.state = 'claimed' AND (c.run_id = EXCLUDED.run_id OR c.run_id = %(dead)s)
RETURNING run_id"""


class LostClaim(Exception):
    """The file's claim is no longer this run's: another run took it over; nothing was committed."""


def holder(con: Any, file_hash: str) -> tuple[str, str] | None:
    """(run_id, state) of the file's claim, or None."""
    with con.cursor() as cur:
        cur.execute("SELECT run_id, state FROM ingest_claims WHERE file_hash = %s", (file_hash,))
        row = cur.fetchone()
    return (row[0], row[1]) if row else None


def claim(con: Any, file_hash: str, file_name: str, run_id: str) -> str:
    """Claim the file for `run_id` (`con`: autocommit, the state database). Returns WON, HELD (a live
    run holds it) or DONE (ingested, or at least committed, by some run)."""
    current = holder(con, file_hash)
    dead = ""
    if current is not None:
        if current[1] == "done":
            return DONE
        if current[0] != run_id and not pg.run_is_alive(con, current[0]):
            dead = current[0]
    with con.cursor() as cur:
        cur.execute(_CLAIM, {"h": file_hash, "f": file_name, "r": run_id, "dead": dead})
        won = cur.fetchone() is not None
    if won:
        return WON
    after = holder(con, file_hash)
    return DONE if after is not None and after[1] == "done" else HELD


@contextlib.contextmanager
def fence(dbname: str, file_hash: str, run_id: str) -> Iterator[dict[str, bool]]:
    """Hold the claim row locked for the block, which must end with the DuckLake COMMIT; mark it done
    when the block ends normally (or drop it when the block set `release`: a quarantined file's content
    may land again, fixed config or not, and is judged again as in the embedded mode). Raises LostClaim
    at once when the claim is not (or no longer) ours. If the process dies inside, PostgreSQL drops the
    lock and the claim stays `claimed`."""
    con = pg.connect(dbname, autocommit=False)
    try:
        with con.cursor() as cur:
            cur.execute(
                "SELECT run_id, state FROM ingest_claims WHERE file_hash = %s FOR UPDATE", (file_hash,)
            )
            row = cur.fetchone()
            if row is None or tuple(row) != (run_id, "claimed"):
                raise LostClaim(f"claim of {file_hash[:12]} is now {row!r}, not run {run_id}'s")
            outcome = {"release": False}
            yield outcome
            if outcome["release"]:
                cur.execute(
                    "DELETE FROM ingest_claims WHERE file_hash = %s AND run_id = %s", (file_hash, run_id)
                )
            else:
                cur.execute(
                    "UPDATE ingest_claims SET state = 'done', done_at = now() WHERE file_hash = %s AND run_id = %s",
                    (file_hash, run_id),
                )
        con.commit()
    except BaseException:
        con.rollback()
        raise
    finally:
        con.close()


def release(con: Any, file_hash: str, run_id: str) -> None:
    """Give up a claim without committing anything (the file could not be read from the store)."""
    with con.cursor() as cur:
        cur.execute(
            "DELETE FROM ingest_claims WHERE file_hash = %s AND run_id = %s AND state = 'claimed'",
            (file_hash, run_id),
        )
