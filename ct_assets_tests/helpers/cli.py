"""The `ct-assets` console script run in a subprocess on a temporary project, and what its output must
look like (one JSON line on stdout; a refusal is one `ct-assets: error:` line on stderr)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

COMMAND_TIMEOUT = 300  # seconds; a cycle on the small configuration takes well under a minute


def console_script() -> str:
    """The console script installed beside the interpreter running the tests."""
    bin_dir = str(Path(sys.executable).parent)
    found = shutil.which("ct-assets", path=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]))
    assert found, f"ct-assets is not installed in {bin_dir}"
    return found


def cli_env(
    home: Path | str, config: Path | str | None = None, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of a command: no CT_ASSETS_* variable but the config given (and `extra`), the
    Dagster instance at `home`, this interpreter's scripts first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CT_ASSETS")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["DAGSTER_HOME"] = str(home)
    if config is not None:
        env["CT_ASSETS_CONFIG"] = str(config)
    env.update(extra or {})
    return env


def cli(
    project: Path,
    *args: str,
    cwd: Path | None = None,
    config: Path | str | None = None,
    home: Path | str | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """`ct-assets ARGS` in `project` (or `cwd`). The config and the Dagster instance default to the ones
    the test's fixtures exported (CT_ASSETS_CONFIG, if set, and DAGSTER_HOME)."""
    return subprocess.run(
        [console_script(), *args],
        cwd=cwd or project,
        env=cli_env(
            home or os.environ["DAGSTER_HOME"], config or os.environ.get("CT_ASSETS_CONFIG"), extra_env
        ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """The command succeeded, without a traceback."""
    assert proc.returncode == 0, (
        f"{' '.join(map(str, proc.args[1:]))} exited {proc.returncode}\n"
        f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def one_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """stdout holds exactly one JSON object on one line (logs belong on stderr)."""
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line of JSON on stdout, got {len(lines)}:\n{proc.stdout[-2000:]}"
    data = json.loads(lines[0])
    assert isinstance(data, dict), lines[0]
    return data


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ct-assets: error: ")]


def error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """A refused command: non-zero exit, no traceback, exactly one `ct-assets: error:` line (any other
    stderr line is a ct-assets log line, not a second copy of a Python error)."""
    where = (
        f"{' '.join(map(str, proc.args[1:]))}: rc={proc.returncode}\n"
        f"stdout: {proc.stdout[-1000:]}\nstderr: {proc.stderr[-2000:]}"
    )
    assert proc.returncode != 0, where
    assert "Traceback" not in proc.stderr + proc.stdout, where
    lines = proc.stderr.strip().splitlines()
    errors = error_lines(proc.stderr)
    assert len(errors) == 1, where
    assert all(line.startswith("ct-assets:") for line in lines), where
    assert len(errors[0]) > len("ct-assets: error: "), where
    return errors[0]
