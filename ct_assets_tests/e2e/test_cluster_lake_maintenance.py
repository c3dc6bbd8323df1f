"""Cluster mode's DuckLake maintenance: after a cycle over six landed files, `lake_maintenance_job` (run
as the schedule would, on the PostgreSQL instance) merges the warehouse's small Parquet files; the rows
and their hashes are unchanged, the champion still reproduces byte for byte from the merged files, and
the next cycle ingests and trains on them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ct_assets_tests.helpers.cluster import ClusterProject, Services, cluster_extra_missing

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(bool(cluster_extra_missing()), reason=cluster_extra_missing() or "-"),
]

LIVE_FILES = "SELECT count(*) FROM __ducklake_metadata_wh.ducklake_data_file WHERE end_snapshot IS NULL"
DAGSTER_JOB = [
    str(Path(sys.executable).parent / "dagster"),
    "job",
    "execute",
    "-m",
    "ct_assets.definitions",
    "-j",
]
ROWS = "SELECT count(*), sum(_row_hash), bit_xor(_row_hash) FROM raw_deltas"


def test_maintenance_merges_small_files_and_changes_no_row(
    tmp_path: Path, cluster_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from ct_assets.defs.build import build_definitions

    cluster = cluster_services.fresh()
    host = ClusterProject.make(tmp_path / "host", cluster, cluster_services)
    assert host.cli("init").returncode == 0
    out = host.cli("simulate", "--batches", "7", "--rows", "800", "--seed", "4")
    assert out.returncode == 0, out.stderr
    files = sorted((host.folder / "data" / "landing").glob("*.parquet"))
    host.land(files[:6])
    first = host.cli("cycle", "--json")
    assert first.returncode == 0, first.stderr[-3000:]
    champion = json.loads(first.stdout)["champion_version"]
    files_before, rows_before = host.query(LIVE_FILES)[0][0], host.query(ROWS)[0]
    monkeypatch.setenv("CT_ASSETS_CONFIG", host.env["CT_ASSETS_CONFIG"])
    schedules = {s.name: s for s in build_definitions().schedules or []}  # type: ignore[union-attr]
    nightly = schedules["lake_maintenance_schedule"]
    assert nightly.job_name == "lake_maintenance_job" and nightly.cron_schedule == "17 3 * * *"

    run = subprocess.run(
        [*DAGSTER_JOB, "lake_maintenance_job"],
        cwd=host.folder,
        env=host.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    files_after = host.query(LIVE_FILES)[0][0]
    assert files_after < files_before, (files_before, files_after)
    assert host.query(ROWS)[0] == rows_before

    with dg.DagsterInstance.from_config(str(host.folder / "dagster_home")) as instance:
        (record,) = instance.get_run_records(dg.RunsFilter(job_name="lake_maintenance_job"))
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        outputs = instance.get_records_for_run(
            record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_OUTPUT
        ).records
        metadata = outputs[0].event_log_entry.dagster_event.step_output_data.metadata  # type: ignore[union-attr]
        assert metadata["data files before"].value == files_before
        assert metadata["data files after"].value == files_after

    reproduced = host.cli("reproduce", champion)
    assert reproduced.returncode == 0 and "byte-identical" in reproduced.stdout, (
        reproduced.stdout + reproduced.stderr
    )
    host.land(files[6:])
    second = host.cli("cycle", "--json", "--force")
    assert second.returncode == 0, second.stderr[-3000:]
    assert json.loads(second.stdout)["ingested_files"] == 1
    print(f"data files {files_before} -> {files_after}; rows {rows_before[0]} unchanged")
