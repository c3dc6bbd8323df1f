"""Each asset's code version follows its code and the project modules it imports: on a temporary copy
of the package, an edit to the gate's rule changes validation_report's version and not raw_deltas', and
Dagster (the real web server, over GraphQL) then reports validation_report stale for its code."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import ct_assets
from ct_assets.definitions import defs
from ct_assets_tests.helpers.config import small, write_config
from ct_assets_tests.helpers.servers import graphql, server_env, webserver

GATE_RULE = Path("ct_assets", "core", "gate", "rule.py")
TIMEOUT = 300
VERSIONS = """
import json, ct_assets
from ct_assets.definitions import defs
versions = {s.key.to_user_string(): s.code_version for s in defs.resolve_all_asset_specs()}
print(json.dumps({"package": ct_assets.__file__, "versions": versions}))
"""
STALENESS_QUERY = """
{
  assetNodes {
    assetKey { path }
    staleStatus
    staleCauses { key { path } category reason }
  }
}
"""


def copy_package(tmp_path: Path) -> Path:
    """A copy of the ct_assets package under tmp_path/src (what PYTHONPATH should point at)."""
    src = tmp_path / "src"
    shutil.copytree(
        Path(ct_assets.__file__).parent, src / "ct_assets", ignore=shutil.ignore_patterns("__pycache__")
    )
    return src


def copy_env(src: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CT_ASSETS")}
    return {**env, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1", **(extra or {})}


def python(src: Path, cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """stdout of this interpreter run on the copied package."""
    proc = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env or copy_env(src),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def code_versions(src: Path, cwd: Path) -> dict[str, str]:
    """Each asset's code version in the Definitions loaded from the copy, in a fresh process."""
    out = json.loads(python(src, cwd, "-c", VERSIONS).strip().splitlines()[-1])
    assert Path(out["package"]).is_relative_to(src), out["package"]  # the copy, not the checkout
    return out["versions"]


def edit_the_gate(src: Path) -> None:
    with (src / GATE_RULE).open("a") as f:
        f.write("\n\ndef _edited_by_a_test() -> None:\n    pass\n")


def test_every_asset_has_a_code_version_from_its_sources() -> None:
    versions = {s.key.to_user_string(): s.code_version for s in defs.resolve_all_asset_specs()}
    assert all(v and len(v) == 16 for v in versions.values()), versions
    assert versions["raw_deltas"] != versions["validation_report"]


def test_an_edit_to_the_gate_changes_validation_report_and_not_raw_deltas(tmp_path: Path) -> None:
    src = copy_package(tmp_path)
    before = code_versions(src, tmp_path)
    assert before == {s.key.to_user_string(): s.code_version for s in defs.resolve_all_asset_specs()}
    edit_the_gate(src)
    after = code_versions(src, tmp_path)
    changed = {name for name in before if before[name] != after[name]}
    assert "validation_report" in changed
    assert "champion_model" in changed  # it imports the validation module (its blocking checks)
    assert "raw_deltas" not in changed
    assert "challenger_model" not in changed


@pytest.mark.slow
def test_dagster_reports_validation_report_stale_for_its_code(tmp_path: Path) -> None:
    """Both assets materialized by a CT cycle of the copied package; then the gate is edited."""
    src = copy_package(tmp_path)
    project = tmp_path / "project"
    home = project / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    config = write_config(project / "ct.toml", small())
    env = copy_env(src, {"DAGSTER_HOME": str(home), "CT_ASSETS_CONFIG": str(config)})
    cli = ("-m", "ct_assets.cli.main")
    python(src, project, *cli, "init", env=env)
    python(src, project, *cli, "simulate", "--batches", "3", "--rows", "3000", "--seed", "1", env=env)
    outcome = json.loads(python(src, project, *cli, "cycle", "--force", "--json", env=env))
    assert outcome["verdict"] == "promoted", outcome

    edit_the_gate(src)
    with webserver(project, {**server_env(project, home, config), "PYTHONPATH": str(src)}) as port:
        nodes = {"/".join(n["assetKey"]["path"]): n for n in graphql(port, STALENESS_QUERY)["assetNodes"]}

    report: dict[str, Any] = nodes["validation_report"]
    assert report["staleStatus"] == "STALE", report
    own = [c for c in report["staleCauses"] if c["key"]["path"] == ["validation_report"]]
    assert [(c["category"], c["reason"]) for c in own] == [("CODE", "has a new code version")], report
    assert nodes["raw_deltas"]["staleStatus"] == "FRESH", nodes["raw_deltas"]
    assert nodes["raw_deltas"]["staleCauses"] == []
