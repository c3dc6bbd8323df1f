"""Whether files wait to be ingested, in either mode, without loading the ingest machinery."""

from __future__ import annotations

from ct_assets.config import Settings
from ct_assets.core.ingest import landing
from ct_assets.store.objects import ObjectStore

LANDING, ARCHIVE, QUARANTINE = "landing", "archive", "quarantine"  # areas under [cluster] objects


def has_landed(settings: Settings) -> bool:
    """Whether any ready file waits (in the landing folder, or under <objects>/landing/)."""
    if settings.cluster is None:
        return bool(landing.ready_entries(settings.paths.landing))
    return any(landing.is_ready_name(o.name) for o in ObjectStore(settings.cluster.objects).list(LANDING))
