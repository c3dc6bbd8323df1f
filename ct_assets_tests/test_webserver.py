"""End to end: the real Dagster web server serves ct_assets' graph, checks and sensors over GraphQL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 120.0
GROUPS = {
    "raw_deltas": "ingestion",
    "golden_dataset": "datasets",
    "training_dataset": "datasets",
    "challenger_model": "training",
    "validation_report": "validation",
    "champion_model": "registry",
    "champion_performance": "monitoring",
}
UPSTREAM = {
    "raw_deltas": set(),
    "golden_dataset": {"raw_deltas"},
    "training_dataset": {"raw_deltas", "golden_dataset"},
    "challenger_model": {"training_dataset"},
    "validation_report": {"challenger_model", "training_dataset"},
    "champion_model": {"validation_report"},
    "champion_performance": {"raw_deltas", "champion_model"},
}
BLOCKING_CHECKS = {
    "challenger_no_regression_golden",
    "challenger_no_regression_holdout",
    "challenger_no_slice_regression",
    "challenger_above_floor",
    "challenger_predictions_sane",
}
SENSORS = {"landing_sensor", "retrain_sensor"}

GRAPH_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        locationOrLoadError { __typename ... on PythonError { message } }
      }
    }
  }
  assetNodes {
    assetKey { path }
    groupName
    dependencyKeys { path }
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name blocking } }
    }
  }
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        sensors { name sensorState { status } }
      }
    }
  }
}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict[str, Any]:
    req = urllib.request.Request(
        f"http://{HOST}:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = json.loads(resp.read())
    assert not body.get("errors"), body["errors"]
    return body["data"]


def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on `port`, read from the kernel's tables (Linux)."""
    out: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                addr, hexport = fields[1].split(":")
                if fields[3] != "0A" or int(hexport, 16) != port:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(addr)
                if width == 8:
                    out.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    out.add(socket.inet_ntop(socket.AF_INET6, words))
    return out


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the server's whole process group (it starts a code server beside itself)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything of the group that outlived its parent


@contextlib.contextmanager
def webserver(project: Path) -> Iterator[int]:
    workspace = project / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: ct_assets.definitions\n"
        "      location_name: ct_assets\n"
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CT_ASSETS")}
    env["DAGSTER_HOME"] = str(project / "dagster_home")
    log_path = project / "webserver.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster_webserver", "-h", HOST, "-p", str(port), "-w", str(workspace)],
            cwd=project,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"web server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}/server_info", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"web server not up after {STARTUP_TIMEOUT} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield port
    finally:
        stop(proc)


def test_webserver_serves_graph_checks_and_sensors(project: Path) -> None:
    with webserver(project) as port:
        bound = listening_addresses(port)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            other_loopback = s.connect_ex(("127.0.0.2", port))
        data = graphql(port, GRAPH_QUERY)

    assert bound == {HOST}, f"the web server listens on {sorted(bound)}, not on {HOST} only"
    assert other_loopback != 0, "the web server accepts connections on 127.0.0.2"

    ws = data["workspaceOrError"]
    assert ws["__typename"] == "Workspace", ws
    entries = {e["name"]: e["locationOrLoadError"] for e in ws["locationEntries"]}
    assert entries.get("ct_assets", {}).get("__typename") == "RepositoryLocation", entries

    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert set(nodes) == set(GROUPS), sorted(nodes)
    assert {k: n["groupName"] for k, n in nodes.items()} == GROUPS
    assert {k: {"/".join(d["path"]) for d in n["dependencyKeys"]} for k, n in nodes.items()} == UPSTREAM

    checks = nodes["validation_report"]["assetChecksOrError"]
    assert checks["__typename"] == "AssetChecks", checks
    by_name = {c["name"]: c["blocking"] for c in checks["checks"]}
    assert set(by_name) >= BLOCKING_CHECKS, sorted(by_name)
    assert all(by_name[name] is True for name in BLOCKING_CHECKS), by_name

    repos = data["repositoriesOrError"]
    assert repos["__typename"] == "RepositoryConnection", repos
    sensors = {
        s["name"]: s["sensorState"]["status"]
        for repo in repos["nodes"]
        if repo["location"]["name"] == "ct_assets"
        for s in repo["sensors"]
    }
    assert set(sensors) >= SENSORS, sorted(sensors)
    assert {name: sensors[name] for name in SENSORS} == dict.fromkeys(SENSORS, "RUNNING")
