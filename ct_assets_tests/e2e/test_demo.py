"""The demo serves the web UI on loopback only: the default host of `ct-assets demo` and the `dagster dev`
command it builds, the shipped files, and a real `ct-assets demo` listening on 127.0.0.1 alone."""

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

import ct_assets
from ct_assets.cli.main import build_parser
from ct_assets.commands.demo import dagster_dev_command
from ct_assets_tests.helpers.cli import cli_env, console_script
from ct_assets_tests.helpers.processes import (
    HOST,
    accepts_on,
    descendants,
    free_port,
    listening_addresses,
    wait_for_port,
)

PACKAGE = Path(ct_assets.__file__).resolve().parent
REPO = PACKAGE.parent
LOOPBACK = HOST


def test_the_demo_serves_the_ui_on_loopback_unless_told_otherwise(tmp_path: Path) -> None:
    default = build_parser().parse_args(["demo"])
    assert default.host == LOOPBACK
    command = dagster_dev_command(default.host, default.port, tmp_path / "workspace.yaml")
    assert command[command.index("-h") + 1] == LOOPBACK
    assert "--host" not in command and command.count("-h") == 1
    chosen = build_parser().parse_args(["demo", "--host", "0.0.0.0", "--port", "3111"])
    command = dagster_dev_command(chosen.host, chosen.port, tmp_path / "workspace.yaml")
    assert command[command.index("-h") + 1] == "0.0.0.0" and command[command.index("-p") + 1] == "3111"
    # Neither the Makefile's `demo` nor the shipped workspace and instance files widen it.
    make_demo = re.search(r"^demo:.*?\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert make_demo and "--host" not in make_demo.group(1) and " -h" not in make_demo.group(1)
    workspace = (REPO / "workspace.yaml").read_text()
    assert "python_module" in workspace and "host" not in workspace
    instance_yaml = (PACKAGE / "dagster_instance.yaml").read_text()
    assert "0.0.0.0" not in instance_yaml and "host:" not in instance_yaml


@pytest.mark.slow
def test_ct_assets_demo_listens_on_loopback_only(project: Path) -> None:
    port = free_port()
    log = project / "demo.log"
    with open(log, "wb") as out:
        demo = subprocess.Popen(
            [console_script(), "demo", "--port", str(port), "--interval", "3600"],
            cwd=project,
            env=cli_env(project / "dagster_home"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    groups: set[int] = set()
    try:
        wait_for_port(demo, port, log, 150)
        groups |= process_groups(demo.pid)
        time.sleep(2)
        bound = listening_addresses(port)
        other = accepts_on("127.0.0.2", port)
        groups |= process_groups(demo.pid)
    finally:
        # Ctrl-C: the demo stops `dagster dev` (its own process group) before it exits.
        with contextlib.suppress(ProcessLookupError):
            demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=20)
        for group in groups - {os.getpgid(0)}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
    assert bound == {LOOPBACK}, f"the web UI listens on {sorted(bound)}"
    assert not other, "the web UI accepts connections on 127.0.0.2"
    assert f"http://{LOOPBACK}:{port}" in log.read_text()


def process_groups(pid: int) -> set[int]:
    """The process groups of everything below `pid` (the demo starts `dagster dev` in its own)."""
    groups = set()
    for child in descendants(pid):
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(child))
    return groups
