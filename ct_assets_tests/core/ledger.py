"""Ledger rows written by hand at fixed times, for the registry and trigger tests."""

from datetime import datetime, timedelta

import duckdb

from ct_assets.core import registry
from ct_assets.core.registry import LedgerEntry

T0 = datetime(2025, 3, 1, 9, 0, 0)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def act(
    con: duckdb.DuckDBPyConnection, action: str, version: str | None, minutes: int, **kw: object
) -> LedgerEntry:
    """One ledger decision, with the champion after it as the registry's callers compute it."""
    champ = registry.champion(con)
    if action in ("promoted", "approved", "rolled_back"):
        champ = version
    return registry.record(con, action=action, version=version, champion_after=champ, now=at(minutes), **kw)
