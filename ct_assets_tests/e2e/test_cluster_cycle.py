"""Cluster mode, one CT cycle end to end: files landed on S3, ingest -> train -> gate -> promote on the
DuckLake warehouse and the PostgreSQL Dagster instance; the champion is then read back from another
working folder (another host): its registry entry, its runs and its model, fetched from S3."""

import json
from pathlib import Path

import pytest

from ct_assets_tests.helpers.cluster import ClusterProject, Services, cluster_extra_missing
from ct_assets_tests.helpers.servers import graphql, webserver

CHAMPION_QUERY = """{ assetOrError(assetKey: {path: ["champion_model"]}) {
  ... on Asset { assetMaterializations(limit: 1) { runId tags { key value } } } } }"""

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(bool(cluster_extra_missing()), reason=cluster_extra_missing() or "-"),
]


def test_a_cycle_promotes_a_champion_that_another_host_reads_back(
    tmp_path: Path, cluster_services: Services
) -> None:
    import dagster as dg

    cluster = cluster_services.fresh()
    a = ClusterProject.make(tmp_path / "host_a", cluster, cluster_services)
    b = ClusterProject.make(tmp_path / "host_b", cluster, cluster_services)
    assert a.cli("init").returncode == 0
    out = a.cli("simulate", "--batches", "3", "--rows", "4000", "--seed", "11")
    assert out.returncode == 0, out.stderr
    files = sorted((a.folder / "data" / "landing").glob("*.parquet"))
    a.land(files)
    for f in files:
        f.unlink()  # only the object store holds them now

    cycle = a.cli("cycle", "--json")
    assert cycle.returncode == 0, cycle.stderr[-3000:]
    result = json.loads(cycle.stdout)
    assert result["verdict"] == "promoted" and result["ingested_files"] == 3, result
    champion = result["champion_version"]
    assert a.keys(f"models/{champion}") == ["card.json", "model.txt"] and set(a.keys("reports")) == {
        f"{champion}.html",
        f"{champion}.json",
    }

    # Another host: nothing on its disk but its own config and instance folder.
    assert b.cli("init").returncode == 0
    status = b.cli("status")
    assert status.returncode == 0 and f"champion: {champion}" in status.stdout, status.stdout + status.stderr
    ledger = b.query("SELECT action, version FROM ledger ORDER BY entry_id")
    assert ledger[-1] == ("promoted", champion)
    sample = b.folder / "rows.parquet"
    _download_one(b, sample)
    scored = b.cli("predict", str(sample))
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert (b.folder / "data" / "models" / champion / "card.json").is_file()  # fetched from S3

    with dg.DagsterInstance.from_config(str(b.folder / "dagster_home")) as inst:
        runs = {r.run_id: r for r in inst.get_runs()}
    for run_id in result["runs"].values():  # a's runs, in the shared PostgreSQL instance
        assert runs[run_id].status == dg.DagsterRunStatus.SUCCESS

    # B's web server, on the shared instance, shows A's promotion: champion_model's newest
    # materialization, from A's CT run, with the champion as its data version.
    with webserver(b.folder, b.env) as port:
        asset = graphql(port, CHAMPION_QUERY)["assetOrError"]
    newest = asset["assetMaterializations"][0]
    tags = {t["key"]: t["value"] for t in newest["tags"]}
    assert newest["runId"] in result["runs"].values() and tags["dagster/data_version"] == champion, newest


def _download_one(project: ClusterProject, target: Path) -> None:
    from ct_assets.store.objects import ObjectStore

    store = ObjectStore(project.cluster["objects"])
    store.download(store.key("archive", project.keys("archive")[0]), target)
