"""`ct-assets demo`: the web UI and daemon (`dagster dev` on 127.0.0.1), sensors running, and a feeder
that lands a delta every few seconds, so the loop can be watched running by itself."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from ct_assets.config import Settings
from ct_assets.defs.instance import create_instance_storage, ensure_dagster_home
from ct_assets.store.warehouse import init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate

WORKSPACE = """load_from:
  - python_module:
      module_name: ct_assets.definitions
      location_name: ct_assets
"""


def workspace_file(home: Path) -> Path:
    """The workspace.yaml the web UI and the daemon load: the one in the current folder (a checkout),
    else one written into DAGSTER_HOME naming the installed package."""
    local = Path.cwd() / "workspace.yaml"
    if local.is_file():
        return local
    path = home / "workspace.yaml"
    path.write_text(WORKSPACE)
    return path


def _land_bad_copy(good: Path) -> Path:
    """Land a CSV whose column `monthly_spend` is misspelled, as producers sometimes do."""
    frame = pl.read_parquet(good).head(500).rename({"monthly_spend": "monthly_spnd"})
    final = good.with_name(f"bad_{good.stem}.csv")
    part = final.with_name(f".{final.name}.part")
    frame.write_csv(part)
    os.replace(part, final)
    return final


def dagster_dev_command(host: str, port: int, workspace: Path) -> list[str]:
    """`dagster dev` serving the web UI on host:port (the CLI's default host is 127.0.0.1)."""
    return [sys.executable, "-m", "dagster", "dev", "-h", host, "-p", str(port), "-w", str(workspace)]


def run_demo(settings: Settings, *, host: str, port: int, interval: float, rows: int, batches: int) -> int:
    init_warehouse(settings)
    home = ensure_dagster_home()
    create_instance_storage(home)
    cmd = dagster_dev_command(host, port, workspace_file(home))
    print(f"starting the Dagster web UI and daemon: http://{host}:{port}  (DAGSTER_HOME={home})", flush=True)
    print(
        f"feeding {rows} rows every {interval:g} s into {settings.paths.landing}; Ctrl-C stops both",
        flush=True,
    )
    server = subprocess.Popen(cmd, env=dict(os.environ), start_new_session=True)
    # The server runs in its own session (Ctrl-C reaches it through us): on SIGTERM or SIGHUP, exit
    # through the `finally` below so that it is stopped too, never left running without us.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    fed = 0
    try:
        while batches <= 0 or fed < batches:
            if server.poll() is not None:
                print(f"dagster dev exited with code {server.returncode}", file=sys.stderr)
                return 1
            time.sleep(interval)
            # Every 12th delta carries drift, so that blocked challengers show up beside promoted ones.
            drift = 0.6 if fed % 12 == 11 else 0.0
            for path in simulate(settings, SimulationOptions(batches=1, rows=rows, seed=fed, drift=drift)):
                print(f"landed {path.name}" + (" (drifted)" if drift else ""), flush=True)
                if fed % 10 == 4:
                    print(
                        f"landed {_land_bad_copy(path).name} (a renamed column: to be quarantined)",
                        flush=True,
                    )
            fed += 1
        print("feeder done; the UI keeps running until Ctrl-C", flush=True)
        server.wait()
        return server.returncode or 0
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
