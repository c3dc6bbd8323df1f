"""The one clock of the warehouse: naive UTC timestamps."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now, as the naive UTC timestamp the warehouse stores."""
    return datetime.now(UTC).replace(tzinfo=None)
