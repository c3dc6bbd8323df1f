"""Cluster mode, many writers: ingest runs in separate processes with separate working folders, sharing
only PostgreSQL (the Dagster instance, the DuckLake catalog, the file claims) and the S3 object store.
Each landed file is ingested exactly once, whoever races for it and whoever dies."""

import signal
import time
from pathlib import Path

import pytest

from ct_assets_tests.helpers.cluster import ClusterProject, Services, cluster_extra_missing, wait_ready

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(bool(cluster_extra_missing()), reason=cluster_extra_missing() or "-"),
]


def _simulated(project: ClusterProject, batches: int, rows: int, seed: int) -> list[Path]:
    """Delta files from the simulator, written into the project's own (local) landing folder."""
    out = project.cli("simulate", "--batches", str(batches), "--rows", str(rows), "--seed", str(seed))
    assert out.returncode == 0, out.stderr
    return sorted((project.folder / "data" / "landing").glob("*.parquet"))


def _project(tmp_path: Path, services: Services, name: str, cluster: dict[str, str]) -> ClusterProject:
    return ClusterProject.make(tmp_path / name, cluster, services)


def _three_hosts(tmp_path: Path, services: Services) -> tuple[ClusterProject, ...]:
    """Two ingest hosts and a producer, on fresh databases and a fresh bucket; the warehouse made."""
    cluster = services.fresh()
    hosts = tuple(_project(tmp_path, services, n, cluster) for n in ("host_a", "host_b", "producer"))
    init = hosts[0].cli("init")
    assert init.returncode == 0, init.stderr
    return hosts


def _ingested(project: ClusterProject) -> list[tuple]:
    return project.query(
        "SELECT file_name, count(*), count(DISTINCT run_id), sum(rows) FROM ingest_log "
        "WHERE status = 'ingested' GROUP BY file_name ORDER BY file_name"
    )


def test_two_runs_at_once_ingest_each_of_20_files_exactly_once(
    tmp_path: Path, cluster_services: Services
) -> None:
    a, b, producer = _three_hosts(tmp_path, cluster_services)
    files = _simulated(producer, 20, 1500, seed=3)
    assert len(files) == 20
    producer.land(files)
    barrier = tmp_path / "go"
    runs = [p.start_ingest(barrier) for p in (a, b)]
    wait_ready(barrier, runs)  # both have loaded ct_assets and wait
    started = time.perf_counter()
    barrier.touch()
    outs = [r.communicate(timeout=300) for r in runs]
    seconds = time.perf_counter() - started
    for r, (_stdout, stderr) in zip(runs, outs, strict=True):
        assert r.returncode == 0, stderr[-3000:]

    rows = _ingested(a)
    assert [r[0] for r in rows] == [f.name for f in files]  # every file, once each
    assert all(r[1] == 1 for r in rows), rows
    total = a.query("SELECT count(*), count(DISTINCT row_id) FROM raw_deltas")[0]
    assert total[0] == sum(r[3] for r in rows) == total[1]
    by_run = a.query("SELECT run_id, count(*) FROM ingest_log WHERE status = 'ingested' GROUP BY 1")
    ids = a.query("SELECT count(DISTINCT entry_id), count(*), count(DISTINCT batch_id) FROM ingest_log")[0]
    assert ids[0] == ids[1] and ids[2] == 20  # ids from PostgreSQL counters: none handed out twice
    assert a.keys("landing") == [] and a.keys("archive") == [f.name for f in files]
    assert a.state("SELECT state, count(*) FROM ingest_claims GROUP BY 1") == [("done", 20)]
    print(
        f"20 files, {total[0]} rows, 2 runs at once: {seconds:.1f} s; files per run {sorted(n for _, n in by_run)}"
    )


def test_a_run_killed_mid_ingest_loses_nothing_and_the_next_run_succeeds(
    tmp_path: Path, cluster_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ct_assets.config import load_settings
    from ct_assets.core.ingest.objects import ingest_landed_objects

    a, b, producer = _three_hosts(tmp_path, cluster_services)
    files = _simulated(producer, 4, 1500, seed=5)
    producer.land(files)
    barrier = tmp_path / "go"
    barrier.touch()

    # Killed with its first file's rows appended in an open DuckLake transaction (SIGKILL, no cleanup).
    killed = a.start_ingest(barrier, CT_ASSETS_FAILPOINT="ingest.before_commit")
    killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert _ingested(a) == []
    assert a.state("SELECT state, count(*) FROM ingest_claims GROUP BY 1") == [("claimed", 1)]
    assert len(a.keys("landing")) == 4

    # Killed right after its first commit, before the object left the landing area.
    late = b.start_ingest(barrier, CT_ASSETS_FAILPOINT="ingest.after_commit")
    late.communicate(timeout=300)
    assert late.returncode == -signal.SIGKILL
    assert len(_ingested(a)) == 1 and len(a.keys("landing")) == 4

    # The next run takes the dead run's claim over, finishes the other's move, ingests the rest once.
    final = b.start_ingest(barrier)
    _stdout, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr[-3000:]
    rows = _ingested(a)
    assert [r[0] for r in rows] == [f.name for f in files] and all(r[1] == 1 for r in rows), rows
    assert a.keys("landing") == [] and a.keys("archive") == [f.name for f in files]
    assert a.state("SELECT state, count(*), sum(takeovers) FROM ingest_claims GROUP BY 1") == [("done", 4, 1)]
    total = a.query("SELECT count(*), count(DISTINCT row_id) FROM raw_deltas")[0]
    assert total[0] == total[1] == sum(r[3] for r in rows)

    # The same content landed again under another name: logged as a duplicate and archived, as embedded.
    again = tmp_path / "again.parquet"
    again.write_bytes(files[0].read_bytes())
    producer.land([again])
    monkeypatch.chdir(b.folder)
    report = ingest_landed_objects(load_settings(b.env["CT_ASSETS_CONFIG"]), run_id="again")
    assert [(f.name, f.status) for f in report.files] == [("again.parquet", "duplicate")]
    assert a.keys("landing") == [] and "again.parquet" in a.keys("archive")
    assert len(_ingested(a)) == 4


def test_the_landing_sensor_sees_ready_objects_only(tmp_path: Path, cluster_services: Services) -> None:
    from ct_assets.config import load_settings
    from ct_assets.core.ingest.pending import has_landed, landed
    from ct_assets.store.objects import ObjectStore

    cluster = cluster_services.fresh()
    a = _project(tmp_path, cluster_services, "host_a", cluster)
    settings = load_settings(a.env["CT_ASSETS_CONFIG"])
    assert not has_landed(settings)
    store = ObjectStore(cluster["objects"])
    (tmp_path / "f").write_text("x")
    for name in ("b.parquet", "a.csv", "c.parquet.part", ".d.parquet", "sub/e.parquet"):
        store.upload(tmp_path / "f", store.key("landing", name))
    where, files = landed(settings)
    assert where == cluster["objects"] + "/landing/" and has_landed(settings)
    assert sorted(f.split("|")[0] for f in files) == ["a.csv", "b.parquet"]
