"""Ingest from object storage (cluster mode): the landing area is <objects>/landing/ on S3, shared by
every run on every host; nothing else is shared but PostgreSQL.

Each ready object (same readiness rules as the landing folder) is downloaded into this run's own
scratch folder, hashed, and claimed by its hash (store.claims) before anything is validated or
appended; the append commits inside the claim's fence, and the object then moves to archive/ or
quarantine/ (with its .reason.txt). Two runs over the same objects therefore ingest each file exactly
once, and a run killed at any point leaves a claim that the next run takes over (or finds done).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core.ingest import landing
from ct_assets.core.ingest.append import FileResult
from ct_assets.core.ingest.ingest import IngestReport, Outlet, ingest_landed_files, ingest_one
from ct_assets.core.ingest.pending import ARCHIVE, LANDING, QUARANTINE
from ct_assets.store import claims, pg
from ct_assets.store.hashing import file_sha256
from ct_assets.store.objects import ObjectStore, StoredObject
from ct_assets.store.warehouse import connect_reader


def ingest_landed(settings: Settings, *, run_id: str = "") -> IngestReport:
    """The ingest of the configured mode: the landing folder, or the landing area on object storage."""
    if settings.cluster is None:
        return ingest_landed_files(settings, run_id=run_id)
    return ingest_landed_objects(settings, run_id=run_id)


def ingest_landed_objects(settings: Settings, *, run_id: str, now: datetime | None = None) -> IngestReport:
    """Ingest every ready object under <objects>/landing/ that no other live run holds."""
    cluster = settings.cluster
    assert cluster is not None, "ingest_landed_objects is cluster mode's ingest"
    if not run_id:
        raise ValueError("a cluster ingest needs a run id (its claims are held in its name)")
    now = now or utc_now()
    store = ObjectStore(cluster.objects)
    report = IngestReport()
    scratch = settings.paths.landing / f".run-{run_id}"  # this run's own copies; a dot folder is never read
    with pg.run_alive(cluster.state_db, run_id) as state:
        pending = [o for o in store.list(LANDING) if landing.is_ready_name(o.name)]
        pending.sort(key=lambda o: (o.modified, o.name))
        ingested = _ingested_hashes(settings) if pending else set()
        try:
            for obj in pending:
                result = _one(settings, store, state, obj, scratch, run_id, now, ingested)
                if result is not None:
                    report.files.append(result)
                    if result.status == "ingested":
                        ingested.add(result.file_hash)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return report


def _ingested_hashes(settings: Settings) -> set[str]:
    with connect_reader(settings, wait_seconds=30) as con:
        rows = con.execute("SELECT DISTINCT file_hash FROM ingest_log WHERE status = 'ingested'").fetchall()
    return {r[0] for r in rows}


def _one(
    settings: Settings,
    store: ObjectStore,
    state: object,
    obj: StoredObject,
    scratch: Path,
    run_id: str,
    now: datetime,
    ingested: set[str],
) -> FileResult | None:
    """One object: None when another run has it (or it vanished), else what became of it."""
    from botocore.exceptions import ClientError

    local = scratch / obj.name
    try:
        store.download(obj.key, local)
    except ClientError:
        return None  # moved away by the run that handled it meanwhile
    stamp = obj.modified.replace(tzinfo=UTC).timestamp()
    os.utime(local, (stamp, stamp))
    file_hash = file_sha256(local)
    won = claims.claim(state, file_hash, obj.name, run_id)
    fenced = True
    if won == claims.DONE:
        holder = claims.holder(state, file_hash)
        if holder is not None and holder[0] != run_id and pg.run_is_alive(state, holder[0]):
            won = claims.HELD  # its holder is about to move it
        elif _finish_move(settings, store, obj, file_hash):
            won = claims.HELD  # done here: the dead holder's object is where it logged it
        else:
            fenced = False  # the same content again: logged as a duplicate, as in the embedded mode
    if won == claims.HELD:
        local.unlink(missing_ok=True)
        return None
    lf = landing.LandedFile(local, obj.size, stamp)
    try:
        return ingest_one(settings, lf, run_id, now, ingested, _outlet(settings, store, obj, run_id, fenced))
    except claims.LostClaim:
        return None
    finally:
        local.unlink(missing_ok=True)


def _finish_move(settings: Settings, store: ObjectStore, obj: StoredObject, file_hash: str) -> bool:
    """When the run that committed this very object died before moving it (its ingest_log row names
    the object and a target not yet there), move it there now and return True."""
    with connect_reader(settings, wait_seconds=30) as con:
        rows = con.execute(
            "SELECT stored_as FROM ingest_log WHERE file_hash = ? AND file_name = ? ORDER BY entry_id",
            [file_hash, obj.name],
        ).fetchall()
    prefix = f"s3://{store.bucket}/"
    for (stored_as,) in rows:
        if stored_as and stored_as.startswith(prefix) and not store.exists(stored_as[len(prefix) :]):
            _move(store, obj.key, stored_as[len(prefix) :])
            return True
    return False


def _outlet(settings: Settings, store: ObjectStore, obj: StoredObject, run_id: str, fenced: bool) -> Outlet:
    assert settings.cluster is not None
    state_db = settings.cluster.state_db

    def target(status: str, name: str, tag: str) -> str:
        return store.uri(_free_key(store, QUARANTINE if status == "quarantined" else ARCHIVE, name, tag))

    def finish(lf: landing.LandedFile, result: FileResult, target: str) -> None:
        key = target[len(f"s3://{store.bucket}/") :]
        if result.status == "quarantined":
            body = landing.write_reason(
                lf.path, result.reason, [o.__dict__ for o in result.outcomes if not o.success]
            )
            store.upload(body, key + ".reason.txt")
            body.unlink(missing_ok=True)
        _move(store, obj.key, key)

    if not fenced:
        return Outlet(target, finish)
    return Outlet(target, finish, lambda result: claims.fence(state_db, result.file_hash, run_id))


def _free_key(store: ObjectStore, area: str, name: str, tag: str) -> str:
    """<area>/<name>, or <area>/<stem>.<tag>.<ext> when that is taken (as landing.destination)."""
    key = store.key(area, name)
    if not store.exists(key):
        return key
    stem, dot, suffix = name.rpartition(".")
    return store.key(area, f"{stem}.{tag}.{suffix}" if dot else f"{name}.{tag}")


def _move(store: ObjectStore, key: str, target: str) -> None:
    from botocore.exceptions import ClientError

    with contextlib.suppress(ClientError):  # already moved (by a run finishing an orphan's move)
        store.move(key, target)
