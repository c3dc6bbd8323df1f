"""End to end: the real Dagster web server serves ct_assets' graph, checks and sensors over GraphQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from ct_assets_tests.helpers.processes import HOST, accepts_on, listening_addresses
from ct_assets_tests.helpers.runs import BLOCKING_CHECKS
from ct_assets_tests.helpers.servers import graphql, server_env, webserver

pytestmark = pytest.mark.slow

STARTUP_TIMEOUT = 120.0
GROUPS = {
    "raw_deltas": "ingestion",
    "golden_dataset": "datasets",
    "training_dataset": "datasets",
    "challenger_model": "training",
    "validation_report": "validation",
    "champion_model": "registry",
    "champion_performance": "monitoring",
    "predictions": "predictions",
}
UPSTREAM = {
    "raw_deltas": set(),
    "golden_dataset": {"raw_deltas"},
    "training_dataset": {"raw_deltas", "golden_dataset"},
    "challenger_model": {"training_dataset"},
    "validation_report": {"challenger_model", "training_dataset"},
    "champion_model": {"validation_report"},
    "champion_performance": {"raw_deltas", "champion_model"},
    "predictions": {"raw_deltas", "champion_model"},
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


def test_webserver_serves_graph_checks_and_sensors(project: Path) -> None:
    env = server_env(project, project / "dagster_home")
    with webserver(project, env, timeout=STARTUP_TIMEOUT) as port:
        bound = listening_addresses(port)
        other_loopback = accepts_on("127.0.0.2", port)
        data = graphql(port, GRAPH_QUERY)

    assert bound == {HOST}, f"the web server listens on {sorted(bound)}, not on {HOST} only"
    assert not other_loopback, "the web server accepts connections on 127.0.0.2"

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
    assert set(by_name) >= set(BLOCKING_CHECKS), sorted(by_name)
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
