"""A cycle with nothing to do loads neither Dagster nor the libraries of the runs it does not start, unless
a process that executed runs here is gone (its runs may be left STARTED: Dagster's instance is loaded to
fail them)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ct_assets.common import run_processes
from ct_assets_tests.helpers.cli import cli, cli_env, ok

pytestmark = pytest.mark.slow

HEAVY = ("dagster", "great_expectations", "lightgbm", "scipy.stats", "pandas")
# The cycle command in this interpreter, then the heavy modules it loaded, as the last line on stdout.
SCRIPT = (
    "import json, sys\n"
    "from ct_assets.cli.main import main\n"
    "code = main(['cycle', '--json'])\n"
    f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    "sys.exit(code)\n"
)


def cycle_modules(project: Path) -> tuple[dict, list[str]]:
    """The no-op cycle's JSON outcome and the heavy modules its process loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=project,
        env=cli_env(project / "dagster_home"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    *_, out, loaded = proc.stdout.strip().splitlines()
    return json.loads(out), json.loads(loaded)


def test_a_cycle_with_nothing_to_do_loads_dagster_only_to_recover_a_dead_process_runs(project: Path) -> None:
    ok(cli(project, "init"))
    home = project / "dagster_home"
    out, loaded = cycle_modules(project)
    assert out["verdict"] == "not_triggered" and not out["runs"], out
    assert loaded == []
    gone = subprocess.Popen(["true"])
    gone.wait()
    marker = home / run_processes.MARKERS / f"{socket.gethostname()}-{gone.pid}"
    marker.parent.mkdir(exist_ok=True)
    marker.touch()
    out, loaded = cycle_modules(project)
    assert out["verdict"] == "not_triggered", out
    assert "dagster" in loaded
    assert not marker.exists()  # looked at once: the next cycle needs Dagster no more
    assert cycle_modules(project)[1] == []
