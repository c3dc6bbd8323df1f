"""Servers the end-to-end and load tests start for real: the Dagster web server (and GraphQL queries
to it), the Dagster daemon, the instance config ct_assets ships, and a local webhook receiver."""

import contextlib
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ct_assets.defs.instance import create_instance_storage
from ct_assets_tests.helpers.processes import HOST, free_port, stop_family, wait_for_port

WORKSPACE = """load_from:
  - python_module:
      module_name: ct_assets.definitions
      location_name: ct_assets
"""
BIN = Path(sys.executable).parent


def write_workspace(project: Path) -> Path:
    """A workspace.yaml in `project` loading ct_assets.definitions as the code location `ct_assets`."""
    path = project / "workspace.yaml"
    path.write_text(WORKSPACE)
    return path


def shipped_instance_config() -> dict[str, Any]:
    """The Dagster instance config ct_assets ships (run queue, one CT run at a time, run monitoring)."""
    return yaml.safe_load(resources.files("ct_assets").joinpath("dagster_instance.yaml").read_text())


def write_instance_config(home: Path, config: dict[str, Any]) -> None:
    """Make `home` a Dagster instance with `config`, its storage created before a daemon, a launch or a
    web server start (they would race to create it)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    create_instance_storage(home)


def server_env(project: Path, home: Path, config: Path | None = None) -> dict[str, str]:
    """The environment of a Dagster process on `home`: the code server's socket kept inside the test's
    folder (TMPDIR), the given ct_assets config, or none."""
    (project / "tmp").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CT_ASSETS")}
    env.update(DAGSTER_HOME=str(home), TMPDIR=str(project / "tmp"))
    if config is not None:
        env["CT_ASSETS_CONFIG"] = str(config)
    return env


@contextlib.contextmanager
def webserver(project: Path, env: dict[str, str], timeout: float = 180) -> Iterator[int]:
    """`dagster-webserver` on 127.0.0.1 serving the project's workspace; yields its port once it
    answers, and stops it (and the code server it starts) afterwards."""
    write_workspace(project)
    port = free_port()
    log = project / "webserver.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster_webserver", "-h", HOST, "-p", str(port), "-w", "workspace.yaml"],
            cwd=project,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_port(proc, port, log, timeout, http_path="/server_info")
        yield port
    finally:
        stop_family(proc)


def graphql(port: int, query: str) -> dict[str, Any]:
    """The data of a GraphQL query to the web server on `port`; a query with errors fails the test."""
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


# Dagster's sensor daemon waits until MIN_INTERVAL_LOOP_TIME (5 s) has passed between iterations, whatever
# a sensor's minimum interval. No public setting lowers it (dagster.yaml's `sensors` table has none), so a
# daemon whose sensors must tick every second is this private constant patched, then the `dagster-daemon`
# console script's own entry point (found through its public entry-point metadata) in the same process.
FAST_SENSOR_DAEMON = """
import sys
from importlib.metadata import entry_points
import dagster._daemon.sensor as sensor_daemon
assert hasattr(sensor_daemon, "MIN_INTERVAL_LOOP_TIME"), "Dagster moved its sensor loop constant"
sensor_daemon.MIN_INTERVAL_LOOP_TIME = float(sys.argv.pop(1))
(script,) = entry_points(group="console_scripts", name="dagster-daemon")
sys.argv[0] = "dagster-daemon"
sys.exit(script.load()())
"""


@contextlib.contextmanager
def daemon(
    project: Path, env: dict[str, str], *, sensor_loop_seconds: float | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`dagster-daemon run` on the project's workspace, logging to daemon.log, stopped with everything
    it started (code server, run workers) afterwards. With `sensor_loop_seconds`, the sensor daemon
    loops that often instead of every 5 s."""
    write_workspace(project)
    if sensor_loop_seconds is None:
        command = [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]
    else:
        command = [sys.executable, "-c", FAST_SENSOR_DAEMON, str(sensor_loop_seconds)]
        command += ["run", "-w", "workspace.yaml"]
    with (project / "daemon.log").open("wb") as log:
        proc = subprocess.Popen(
            command, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        stop_family(proc)


@dataclass
class Webhook:
    """A local HTTP server that records every request it gets (method, path, headers, body)."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)

    def posts(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"]


@contextlib.contextmanager
def webhook_server(status: int = 200) -> Iterator[Webhook]:
    """A webhook receiver on 127.0.0.1 answering every request with `status`; its URL ends /hooks/ct."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def _record(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen.append(
                {"method": method, "path": self.path, "headers": dict(self.headers.items()), "body": body}
            )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            self._record("POST")

        def do_GET(self) -> None:
            self._record("GET")

        def log_message(self, *args: Any) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Webhook(f"http://{HOST}:{server.server_address[1]}/hooks/ct", seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
