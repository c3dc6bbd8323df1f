"""Cluster mode with `[training] engine = "dask"`: every Dask worker reads its own share of the train rows
from DuckLake (on the object store, catalog in PostgreSQL), so no process holds the training set. A
`cycle` promotes a challenger trained that way, whose card records each worker's share and whose
profile and positives are what one process computes from all the rows; `reproduce` retrains it from
shares within tolerance, and refuses once a train row is deleted from the lake. Runs in a loopback-only
network namespace (LightGBM's collective listens on 0.0.0.0); the workers share only PostgreSQL and the
object store with the host."""

import json
import re
from pathlib import Path

import pytest

from ct_assets_tests.helpers.cluster import ClusterProject, cluster_extra_missing

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.slow,
    pytest.mark.skipif(bool(cluster_extra_missing()), reason=cluster_extra_missing() or "-"),
]
pytest.importorskip("distributed", reason="Dask is not installed (the cluster venv has it)")

WITHIN = re.compile(
    r"^(v\d+): reproducible: within tolerance \(trained on Dask\): golden AUC (\S+) retrained vs (\S+)"
)


def test_each_worker_reads_its_own_share_from_the_lake(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from ct_assets_tests.helpers.dask import dask_cluster, inside_loopback_netns

    if not inside_loopback_netns(request):
        return
    services = request.getfixturevalue("cluster_services")  # started inside the namespace
    cluster = services.fresh()
    host = ClusterProject.make(tmp_path / "host", cluster, services, training={"engine": "dask"})
    producer = ClusterProject.make(tmp_path / "producer", cluster, services)
    assert host.cli("init").returncode == 0
    out = producer.cli("simulate", "--batches", "3", "--rows", "6000", "--seed", "5")
    assert out.returncode == 0, out.stderr
    producer.land(sorted((producer.folder / "data" / "landing").glob("*.parquet")))

    with dask_cluster(tmp_path / "dask", workers=2, env=host.env) as dask:
        scheduler = {"CT_DASK_SCHEDULER": dask.address}
        cycle = host.cli("cycle", "--json", **scheduler)
        assert cycle.returncode == 0, cycle.stderr[-3000:]
        result = json.loads(cycle.stdout)
        assert result["verdict"] == "promoted", result
        version = result["champion_version"]
        reproduced = host.cli("reproduce", version, **scheduler)

        card = json.loads((host.folder / "data" / "models" / version / "card.json").read_text())
        assert card["engine"] == "dask"
        info = card["dask"]
        assert info["rows_read_by"] == "each worker"
        assert info["workers"] == info["machines"] == 2  # both workers joined LightGBM's network
        shares = info["rows_per_worker"]
        assert sum(shares) == card["rows"]["train"] and max(shares) - min(shares) <= 1
        single = _one_process(host, card)
        assert card["rows"]["train_positives"] == single["positives"]
        assert card["profile"] == single["profile"]

        print(reproduced.stdout.strip())  # the figures, shown with -rP
        assert reproduced.returncode == 0, reproduced.stdout + reproduced.stderr[-2000:]
        assert WITHIN.match(reproduced.stdout.strip()), reproduced.stdout

        # One train row deleted from the lake: the shares no longer add up to the recorded hash.
        host.query(f"DELETE FROM raw_deltas WHERE row_id = {single['a_train_row']}")
        refused = host.cli("reproduce", version, **scheduler)
    assert refused.returncode == 1, refused.stdout + refused.stderr[-2000:]
    assert "NOT reproducible: data hash mismatch" in refused.stdout, refused.stdout
    assert f"the train rows read ({card['rows']['train'] - 1} rows" in refused.stdout


def _one_process(host: ClusterProject, card: dict) -> dict:
    """What one process reading every train row computes: the positives and the reference profile."""
    from ct_assets.config import load_settings
    from ct_assets.core.datasets.training import load_dataset, read_split
    from ct_assets.core.modeling import model as lgbm
    from ct_assets.core.monitoring.signals import feature_profile
    from ct_assets.store.warehouse import connect_reader

    settings = load_settings(Path(host.env["CT_ASSETS_CONFIG"]))
    with connect_reader(settings) as con:
        rows = read_split(con, settings, load_dataset(con, card["data_hash"]), "train")
    return {
        "positives": int(lgbm.labels(rows, settings).sum()),
        "profile": json.loads(json.dumps(feature_profile(rows, settings))),
        "a_train_row": int(rows["row_id"][len(rows) // 2]),
    }
