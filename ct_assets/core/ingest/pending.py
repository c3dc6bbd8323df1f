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


def landed(settings: Settings) -> tuple[str, list[str]]:
    """Where files land, and one `name|size|time` line per ready file there (what the landing sensor
    keys its runs on): the landing folder (ready-named symlinks too: ingest quarantines them), or
    <objects>/landing/."""
    if settings.cluster is None:
        files = landing.ready_entries(settings.paths.landing)
        return str(settings.paths.landing), [f"{f.name}|{f.size}|{f.mtime}" for f in files]
    area = settings.cluster.object_uri(LANDING)
    objects = ObjectStore(settings.cluster.objects).list(LANDING)
    return area, [
        f"{o.name}|{o.size}|{o.modified.isoformat()}" for o in objects if landing.is_ready_name(o.name)
    ]
