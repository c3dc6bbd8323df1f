"""The registry as the warehouse holds it, a row of a training data set, and another process holding
the DuckDB file open."""

import contextlib
import subprocess
import sys
from collections.abc import Iterator

from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.datasets.training import DatasetInfo, read_split
from ct_assets.store.sql import fetch_value
from ct_assets.store.warehouse import connect_reader


def champion(settings: Settings) -> str | None:
    with connect_reader(settings) as con:
        return registry.champion(con)


def ledger(settings: Settings, limit: int | None = None) -> list[registry.LedgerEntry]:
    """The ledger, newest entry first."""
    with connect_reader(settings) as con:
        return registry.ledger(con) if limit is None else registry.ledger(con, limit=limit)


def models_state(settings: Settings) -> tuple[str | None, list[str], list[str]]:
    """(champion, registered versions, folders in the models folder, hidden ones included)."""
    with connect_reader(settings) as con:
        champ = registry.champion(con)
        versions = registry.model_versions(con)
    folders = (
        sorted(p.name for p in settings.paths.models.iterdir()) if settings.paths.models.exists() else []
    )
    return champ, versions, folders


HOLD = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
con.execute("SELECT count(*) FROM raw_deltas").fetchall()
print("holding", flush=True)
sys.stdin.readline()
con.close()
"""


@contextlib.contextmanager
def holding(settings: Settings, mode: str) -> Iterator[subprocess.Popen[str]]:
    """Another process (a notebook, say) holding the warehouse open, `ro` read-only or `rw` read-write
    (DuckDB allows one such process per file), until the block ends; it must then close cleanly."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(settings.paths.warehouse), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        yield proc
    finally:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        proc.wait(timeout=30)
    assert proc.returncode == 0


def train_row_id(settings: Settings, ds: DatasetInfo) -> int:
    """A row of the train split: labelled, not golden, before the holdout boundary, in the window."""
    with connect_reader(settings) as con:
        row_id = fetch_value(
            con,
            "SELECT d.row_id FROM raw_deltas d WHERE d._batch_id <= ? AND d.label IS NOT NULL "
            "AND d.event_time >= ? AND d.event_time < ? AND d.satisfaction IS NOT NULL "
            "AND d.row_id NOT IN (SELECT row_id FROM golden_rows WHERE _golden_hash = ?) "
            "ORDER BY d.event_time, d.row_id LIMIT 1 OFFSET 100",
            [ds.max_batch_id, ds.window_start, ds.holdout_start_time, ds.golden_hash],
        )
        train_ids = set(read_split(con, settings, ds, "train")["row_id"].to_list())
    assert row_id in train_ids
    return int(row_id)
