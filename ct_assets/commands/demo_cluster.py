"""`ct-assets demo --cluster`: every part of cluster mode on this machine, each its own process on
127.0.0.1: PostgreSQL, the S3-compatible object store (moto's server), a Dask scheduler and two Dask
workers (ct_assets.tools.loopback_cluster), then `dagster dev` (daemon and web UI) on the PostgreSQL
instance with the steps of launched runs on the workers, and a feeder that lands simulated deltas into
the s3:// landing area. Ctrl-C or SIGTERM stops all of them, each by its process group.

Needs the cluster venv (`make cluster-setup`). The demo folder holds a fresh config, instance folder,
scratch folders and every service's log; it is recreated on each start (objects live in moto's memory
and PostgreSQL's data under it, so nothing from a previous demo could be reused)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from ct_assets.commands.demo import dagster_dev_command, workspace_file
from ct_assets.errors import CtError

if TYPE_CHECKING:
    from ct_assets.store.objects import ObjectStore

MARKER = ".ct-demo-cluster"  # the demo folder is only ever wiped when it carries this file
BUCKET = "ct-demo"
PATH_NAMES = ("warehouse", "landing", "quarantine", "archive", "models", "reports", "state")


def demo_config_text(folder: Path, bucket: str) -> str:
    """The demo's config: absolute scratch [paths] under `folder` (a step runs in its worker's own folder),
    the shared state on PostgreSQL and s3://`bucket`, steps on the Dask workers, and a small, fast
    training so that a champion is promoted within minutes."""
    data = folder / "data"
    paths = {k: str(data / ("warehouse.duckdb" if k == "warehouse" else k)) for k in PATH_NAMES}
    tables: dict[str, dict[str, Any]] = {
        "paths": paths,
        "cluster": {
            "objects": f"s3://{bucket}/ct",
            "data_path": f"s3://{bucket}/lake/",
            "catalog_db": "ducklake_catalog",  # the databases loopback_cluster creates
            "state_db": "ct",
            "dagster_db": "dagster",
            "executor": "dask",
        },
        "retrain": {"min_new_rows": 1000},
        "dataset": {"min_train_rows": 200, "golden_min_rows_per_slice": 50},
        "gate": {"min_slice_rows": 100},
        "training": {"num_iterations": 30},
    }
    return tomli_w.dumps(tables)


def _check_cluster_venv() -> None:
    for module in (
        "boto3",
        "psycopg2",
        "dagster_postgres",
        "distributed",
        "moto",
        "duckdb_extension_ducklake",
    ):
        try:
            __import__(module)
        except ImportError:
            raise CtError(
                f"demo --cluster needs the cluster venv (`make cluster-setup`, then .venv-cluster/bin/ct-assets): "
                f"no module {module!r} in {sys.prefix}"
            ) from None


def _fresh_folder(folder: Path) -> Path:
    folder = folder.resolve()
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).is_file():
            raise CtError(
                f"demo folder {folder} exists and is not a previous cluster demo's; choose another --dir"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).touch()
    folder.chmod(0o755)  # PostgreSQL runs as the `postgres` user when we are root: it must reach its folder
    return folder


def land_object(store: ObjectStore, path: Path) -> str:
    """Upload `path` to the landing area under a not-ready name, then move it to its ready name: the
    landing readiness rules, on S3 (a copy creates the ready object whole, in one step)."""
    from ct_assets.core.ingest.pending import LANDING

    part = store.key(LANDING, f".{path.name}.part")
    final = store.key(LANDING, path.name)
    store.upload(path, part)
    store.move(part, final)
    return store.uri(final)


def run_demo_cluster(folder: Path, *, host: str, port: int, interval: float, rows: int, batches: int) -> int:
    from ct_assets.config import load_settings
    from ct_assets.defs.instance import create_instance_storage, ensure_dagster_home
    from ct_assets.store.objects import ObjectStore
    from ct_assets.store.warehouse import init_warehouse
    from ct_assets.tools.loopback_cluster import loopback_cluster, start_dask
    from ct_assets.tools.simulator import SimulationOptions, simulate

    _check_cluster_venv()
    root = _fresh_folder(folder)
    # Stop everything on Ctrl-C, SIGTERM or SIGHUP, through the `finally` of loopback_cluster (SIGINT too:
    # a shell starts background jobs with it ignored, and Python then installs no handler of its own).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    started = time.monotonic()
    with loopback_cluster(root / "services", bucket=BUCKET, workers=0) as cluster:
        config = root / "config.toml"
        config.write_text(demo_config_text(root, BUCKET))
        cluster.env.update(CT_ASSETS_CONFIG=str(config), DAGSTER_HOME=str(root / "dagster_home"))
        os.environ.update(cluster.env)
        settings = load_settings()
        init_warehouse(settings)
        assert settings.cluster is not None
        home = ensure_dagster_home(settings.cluster.dagster_db)
        create_instance_storage(home)
        start_dask(cluster, 2)  # after the config exists: the workers inherit its environment
        os.environ.update(cluster.env)
        dev = cluster.spawn("dagster-dev", dagster_dev_command(host, port, workspace_file(home)), cwd=root)
        env = cluster.env
        print(f"cluster demo in {root} (services up in {time.monotonic() - started:.1f} s)", flush=True)
        print(f"  web UI + daemon (dagster dev): http://{host}:{port}  pid {dev.proc.pid}", flush=True)
        print(f"  PostgreSQL: {env['PGHOST']}:{env['PGPORT']} (Dagster instance, DuckLake catalog, state)")
        print(f"  object store (moto S3): {env['AWS_ENDPOINT_URL']}  s3://{BUCKET}/ct, s3://{BUCKET}/lake/")
        print(f"  Dask scheduler: {env['CT_DASK_SCHEDULER']}; workers: " + ", ".join(
            f"{s.name} pid {s.proc.pid}" for s in cluster.services if s.name.startswith("dask-worker")
        ))  # fmt: skip
        print(f"  logs: {root / 'services' / 'logs'}; config: {config}; Ctrl-C stops all", flush=True)
        store = ObjectStore(settings.cluster.objects)
        fed = 0
        while batches <= 0 or fed < batches:
            if dev.proc.poll() is not None:
                print(f"dagster dev exited with code {dev.proc.returncode}; see {dev.log}", file=sys.stderr)
                return 1
            drift = 0.6 if fed % 12 == 11 else 0.0  # blocked challengers beside promoted ones
            for path in simulate(settings, SimulationOptions(batches=1, rows=rows, seed=fed, drift=drift)):
                uri = land_object(store, path)
                path.unlink()
                print(f"landed {uri}" + (" (drifted)" if drift else ""), flush=True)
            fed += 1
            time.sleep(interval)
        print("feeder done; everything keeps running until Ctrl-C", flush=True)
        dev.proc.wait()
        return dev.proc.returncode or 0
