"""landing_sensor through build_sensor_context: no ready file, a run request per new set of files with its
attempt in the cursor, and waiting while an ingest run is in flight."""

import hashlib
import json

import dagster as dg

from ct_assets.config import Settings
from ct_assets.core.ingest import landing
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.definitions import defs
from ct_assets_tests.defs.sensors.support import land
from ct_assets_tests.helpers.runs import tick


def test_landing_sensor_skips_when_no_file_is_ready(settings: Settings, instance: dg.DagsterInstance) -> None:
    result, cursor = tick("landing_sensor", instance)
    assert isinstance(result, dg.SkipReason)
    assert "no ready files" in (result.skip_message or "")
    # Files still being written (producer convention) are not ready either.
    settings.paths.landing.mkdir(parents=True, exist_ok=True)
    (settings.paths.landing / ".delta_1.parquet").write_bytes(b"partial")
    (settings.paths.landing / "delta_2.parquet.part").write_bytes(b"partial")
    (settings.paths.landing / "delta_3.csv.tmp").write_bytes(b"partial")
    result, cursor = tick("landing_sensor", instance)
    assert isinstance(result, dg.SkipReason)
    assert "no ready files" in (result.skip_message or "")
    assert cursor is None


def _signature(settings: Settings) -> str:
    files = landing.ready_files(settings.paths.landing)
    text = "\n".join(f"{f.name}|{f.size}|{f.mtime}" for f in files)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_landing_sensor_requests_an_ingest_run_and_records_the_files_in_its_cursor(
    warehouse: Settings, instance: dg.DagsterInstance
) -> None:
    land(warehouse, batches=2, rows=300, seed=1)
    sig = _signature(warehouse)

    result, cursor = tick("landing_sensor", instance)
    assert isinstance(result, dg.RunRequest)
    assert result.run_key == f"ingest-{sig}-1"
    assert result.tags["ct_assets/trigger"] == "landing"
    assert result.tags["ct_assets/files"] == "2"
    assert json.loads(cursor or "") == {"signature": sig, "attempt": 1, "files": 2}

    # The same files still there on the next tick (the run failed, say): a new attempt, a new run key.
    again, cursor2 = tick("landing_sensor", instance, cursor)
    assert isinstance(again, dg.RunRequest)
    assert again.run_key == f"ingest-{sig}-2"
    assert json.loads(cursor2 or "") == {"signature": sig, "attempt": 2, "files": 2}

    # A new file lands: a new signature, attempts start over.
    land(warehouse, batches=1, rows=300, seed=1)
    sig3 = _signature(warehouse)
    assert sig3 != sig
    third, cursor3 = tick("landing_sensor", instance, cursor2)
    assert isinstance(third, dg.RunRequest)
    assert third.run_key == f"ingest-{sig3}-1"
    assert json.loads(cursor3 or "") == {"signature": sig3, "attempt": 1, "files": 3}

    # Once ingested, the landing folder is empty again: skip, cursor left as it was.
    ingest_landed_files(warehouse)
    done, cursor4 = tick("landing_sensor", instance, cursor3)
    assert isinstance(done, dg.SkipReason)
    assert cursor4 == cursor3


def test_landing_sensor_waits_while_an_ingest_run_is_in_flight(
    warehouse: Settings, instance: dg.DagsterInstance
) -> None:
    land(warehouse, batches=1, rows=300, seed=2)
    instance.create_run_for_job(
        job_def=defs.resolve_job_def("ingest_job"), status=dg.DagsterRunStatus.STARTED
    )
    result, cursor = tick("landing_sensor", instance, cursor=None)
    assert isinstance(result, dg.SkipReason)
    assert "in flight" in (result.skip_message or "")
    assert cursor is None
