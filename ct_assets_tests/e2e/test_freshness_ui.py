"""End to end: the freshness the Dagster UI shows follows the configured limits. The real daemon's
freshness evaluation, read back through the real web server's GraphQL."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import dagster as dg
import pytest

from ct_assets.config import Settings
from ct_assets.store.warehouse import init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.runs import check, run
from ct_assets_tests.helpers.servers import (
    daemon,
    graphql,
    server_env,
    shipped_instance_config,
    webserver,
    write_instance_config,
)

pytestmark = pytest.mark.slow

HOUR = 3600
LANDED_HOURS_AGO = 3
EVALUATION_TIMEOUT = 180.0  # seconds for the daemon to load the code and evaluate freshness once

FRESHNESS_QUERY = """
{
  assetNodes {
    assetKey { path }
    internalFreshnessPolicy {
      __typename
      ... on TimeWindowFreshnessPolicy { failWindowSeconds warnWindowSeconds }
    }
    freshnessStatusInfo { freshnessStatus }
  }
}
"""


@contextlib.contextmanager
def clock_set_back(hours: float) -> Iterator[None]:
    """time.time(), which stamps Dagster's events, runs `hours` behind the real clock (still advancing)."""
    real = time.time
    with mock.patch("time.time", lambda: real() - hours * HOUR):
        yield


def ingested_hours_ago(settings: Settings, home: Path, hours: float) -> bool:
    """One delta landed `hours` ago and was ingested then; whether the run's file-age check passed."""
    for path in simulate(settings, SimulationOptions(batches=1, rows=500, seed=1)):
        then = time.time() - hours * HOUR
        os.utime(path, (then, then))
    with dg.DagsterInstance.from_config(str(home)) as instance, clock_set_back(hours):
        result = run(instance, "ingest_job")
    assert result.success
    return bool(check(result, "raw_deltas_newest_file_fresh").passed)


def freshness_in_the_ui(project: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each asset's freshness policy and state as the web server reports them, once the daemon has
    evaluated raw_deltas' freshness."""
    with daemon(project, env), webserver(project, env) as port:
        deadline = time.monotonic() + EVALUATION_TIMEOUT
        while True:
            nodes = {"/".join(n["assetKey"]["path"]): n for n in graphql(port, FRESHNESS_QUERY)["assetNodes"]}
            status = (nodes["raw_deltas"]["freshnessStatusInfo"] or {}).get("freshnessStatus")
            if status not in (None, "UNKNOWN"):
                return nodes
            if time.monotonic() > deadline:
                log = (project / "daemon.log").read_text(errors="replace")[-3000:]
                pytest.fail(f"raw_deltas' freshness still {status} after {EVALUATION_TIMEOUT:.0f} s:\n{log}")
            time.sleep(2)


def windows(node: dict[str, Any]) -> tuple[int, int | None] | None:
    policy = node["internalFreshnessPolicy"]
    return None if policy is None else (policy["failWindowSeconds"], policy["warnWindowSeconds"])


CASES = [
    # config tables, raw_deltas (fail, warn) windows, champion_model's, raw_deltas' state in the UI
    pytest.param({}, (24 * HOUR, 12 * HOUR), (168 * HOUR, 84 * HOUR), "HEALTHY", id="defaults"),
    pytest.param(
        {"freshness": {"max_file_age_hours": 2}, "retrain": {"max_champion_age_hours": 0}},
        (2 * HOUR, HOUR),
        None,
        "DEGRADED",
        id="file-age-2h-champion-age-off",
    ),
]


@pytest.mark.parametrize(("tables", "raw_windows", "champion_windows", "state"), CASES)
def test_the_ui_judges_freshness_by_the_configured_limits(
    make_settings: Callable[..., Settings],
    project: Path,
    tables: dict[str, dict[str, Any]],
    raw_windows: tuple[int, int],
    champion_windows: tuple[int, int] | None,
    state: str,
) -> None:
    """A file landed and ingested 3 hours ago: within the default 24 h limit, past a configured 2 h one.
    The UI says what the file-age check says."""
    settings = make_settings(**tables)
    init_warehouse(settings)
    home = project / "ui_home"
    write_instance_config(home, shipped_instance_config())
    check_passed = ingested_hours_ago(settings, home, LANDED_HOURS_AGO)
    env = server_env(project, home, settings.source)
    env["FRESHNESS_DAEMON_INTERVAL_SECONDS"] = "1"  # Dagster's freshness daemon: evaluate every second

    nodes = freshness_in_the_ui(project, env)

    assert windows(nodes["raw_deltas"]) == raw_windows
    assert windows(nodes["champion_model"]) == champion_windows
    assert nodes["raw_deltas"]["freshnessStatusInfo"]["freshnessStatus"] == state
    assert check_passed == (state == "HEALTHY")  # the UI and the file-age check agree
    others = {k for k, n in nodes.items() if n["internalFreshnessPolicy"] is not None}
    assert others <= {"raw_deltas", "champion_model"}
