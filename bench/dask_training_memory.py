"""Memory of `[training] engine = "dask"` on the DuckLake warehouse: who holds the training rows.

Run with the cluster venv: `.venv-cluster/bin/python bench/dask_training_memory.py [--batches 10 --rows 100000]`.
Starts, on this machine, PostgreSQL, moto's S3 server and a Dask scheduler with two workers (one thread
each, under nannies) through ct_assets.tools.loopback_cluster; builds a cluster-mode project of
`batches` x `rows` simulated rows landed in s3:// and ingested by a first `ct-assets cycle` (which also
trains the champion, on shares). Then the same recorded data set is trained twice more, each time in a
fresh process against freshly restarted workers:
- "each worker": dask_shares.train_on_shares, every worker reading its own share from the lake (what a
  cycle does in cluster mode);
- "this process": read_split of every train row into the process, then dask_training.train, which
  scatters them to the workers (what the embedded warehouse does).
Prints one JSON line per mode: seconds, the process's peak RSS above its RSS after imports, and each
worker's RSS after its restart (training modules imported) and its peak. LightGBM's collective listens on 0.0.0.0, so the whole benchmark re-runs itself in
a loopback-only network namespace (`unshare --net`, needs root or CAP_SYS_ADMIN).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NETNS_ENV = "CT_BENCH_IN_LOOPBACK_NETNS"
MODES = ("each worker", "this process")


def _rss_mb() -> float:
    """This process's resident set now, in MB (from /proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # KB on Linux


def train_once(mode: str) -> dict:
    """One training of the champion's data set in this process, in `mode`; the figures."""
    from ct_assets.config import load_settings
    from ct_assets.core import registry
    from ct_assets.core.datasets.training import load_dataset, read_split
    from ct_assets.core.modeling import dask_shares, dask_training
    from ct_assets.store.warehouse import connect_reader

    settings = load_settings()
    import distributed  # noqa: F401  (imported before the baseline, as both modes need it)
    import lightgbm  # noqa: F401

    with connect_reader(settings) as con:
        champion = registry.champion(con)
        assert champion is not None, "no champion to take the data set from"
        rec = registry.model(con, champion)
        assert rec is not None
        ds = load_dataset(con, rec.dataset_hash)
    baseline = _rss_mb()
    started = time.perf_counter()
    if mode == "each worker":
        trained = dask_shares.train_on_shares(settings, ds).trained
    else:
        with connect_reader(settings) as con:
            rows = read_split(con, settings, ds, "train")
        trained = dask_training.train(rows, settings)
        del rows
    seconds = time.perf_counter() - started
    return {
        "mode": mode,
        "train_rows": ds.n_train,
        "seconds": round(seconds, 2),
        "process_peak_above_baseline_mb": round(_peak_mb() - baseline, 1),
        "process_baseline_mb": round(baseline, 1),
        "rows_per_worker": trained.engine_info["rows_per_worker"],
        "machines": trained.engine_info["machines"],
    }


def _workers_peak_mb(address: str) -> dict[str, float]:
    from distributed import Client

    with Client(address, timeout=30, set_as_default=False) as client:
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3)
    return {w: round(float(v), 1) for w, v in sorted(peaks.items())}


def _restart_workers(address: str) -> dict[str, float]:
    """Restart the workers (fresh processes, so that their peaks are this training's); their RSS then,
    with ct_assets' training modules and DuckDB's lake extensions loaded (both modes need them there)."""
    from distributed import Client

    def warmed_rss() -> float:
        import lightgbm  # noqa: F401

        import ct_assets.core.modeling.dask_shares  # noqa: F401

        return _rss_mb()

    with Client(address, timeout=30, set_as_default=False) as client:
        client.restart(timeout=120)
        client.wait_for_workers(2, timeout=120)
        after = client.run(warmed_rss)
    return {w: round(float(v), 1) for w, v in sorted(after.items())}


def run(batches: int, rows: int) -> None:
    from ct_assets.commands.demo_cluster import land_object
    from ct_assets.store.objects import ObjectStore
    from ct_assets.tools.loopback_cluster import loopback_cluster

    root = Path(tempfile.mkdtemp(prefix="ct_bench_dask_"))
    root.chmod(0o755)
    with loopback_cluster(root / "services", workers=2) as cluster:
        project = root / "project"
        project.mkdir()
        config = project / "ct.toml"
        config.write_text(
            "[cluster]\n"
            'objects = "s3://ct-lake/ct"\ndata_path = "s3://ct-lake/lake/"\n'
            'catalog_db = "ducklake_catalog"\nstate_db = "ct"\ndagster_db = "dagster"\n'
            '[training]\nengine = "dask"\nnum_iterations = 50\n'
            "[retrain]\nmin_new_rows = 1000\n",
            encoding="utf-8",
        )
        env = {
            **os.environ,
            **cluster.env,
            "CT_ASSETS_CONFIG": str(config),
            "DAGSTER_HOME": str(project / "home"),
        }
        os.environ.update(env)
        cli = str(Path(sys.executable).with_name("ct-assets"))

        def call(*args: str) -> str:
            proc = subprocess.run([cli, *args], cwd=project, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"ct-assets {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
            return proc.stdout

        call("init")
        call("simulate", "--batches", str(batches), "--rows", str(rows), "--seed", "1")
        store = ObjectStore("s3://ct-lake/ct")
        for f in sorted((project / "data" / "landing").glob("*.parquet")):
            land_object(store, f)
        t = time.perf_counter()
        cycle = json.loads(call("cycle", "--json"))
        print(
            json.dumps({"first cycle": cycle["verdict"], "seconds": round(time.perf_counter() - t, 1)}),
            flush=True,
        )
        address = cluster.env["CT_DASK_SCHEDULER"]
        for mode in MODES:
            worker_baseline = _restart_workers(address)
            proc = subprocess.run(
                [sys.executable, __file__, "--train", mode],
                cwd=project,
                env=env,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"training ({mode}) failed:\n{proc.stderr[-3000:]}")
            figures = json.loads(proc.stdout.strip().splitlines()[-1])
            figures["worker_baseline_mb"] = worker_baseline
            figures["worker_peak_mb"] = _workers_peak_mb(address)
            print(json.dumps(figures), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--train", choices=MODES, help=argparse.SUPPRESS)  # one measured training
    args = parser.parse_args()
    if args.train:
        print(json.dumps(train_once(args.train)))
        return
    if os.environ.get(NETNS_ENV) != "1":
        script = 'ip link set lo up && exec "$0" "$@"'
        cmd = [sys.executable, __file__, "--batches", str(args.batches), "--rows", str(args.rows)]
        isolate = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c", script]
        sys.exit(subprocess.run([*isolate, *cmd], env={**os.environ, NETNS_ENV: "1"}).returncode)
    run(args.batches, args.rows)


if __name__ == "__main__":
    main()
