"""A champion trained once for this folder through Dagster; tests that need one copy its data folder."""

import shutil
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import tomli_w

from ct_assets.common.clock import utc_now
from ct_assets.config import load_settings
from ct_assets.store.warehouse import init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.runs import run
from ct_assets_tests.helpers.warehouse import champion


@pytest.fixture(scope="package")
def champion_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose champion v0001 was trained (through Dagster) on 3 batches whose newest event is
    10 hours old; tests copy its data folder instead of training a champion each."""
    root = tmp_path_factory.mktemp("champion_template")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        home = root / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        mp.setenv("DAGSTER_HOME", str(home))
        config = root / "config.toml"
        config.write_text(tomli_w.dumps(small()))
        mp.setenv("CT_ASSETS_CONFIG", str(config))
        settings = load_settings(config)
        init_warehouse(settings)
        simulate(
            settings, SimulationOptions(batches=3, rows=3000, seed=11), now=utc_now() - timedelta(hours=10)
        )
        with dg.instance_for_test(temp_dir=str(home)) as inst:
            assert run(inst, "ingest_job").success
            first = run(inst, "ct_job")
            assert first.success
            assert all(e.passed for e in first.get_asset_check_evaluations())
        assert champion(settings) == "v0001"
    return root


@pytest.fixture
def with_champion(champion_template: Path, project: Path) -> Path:
    """The template's warehouse, models and state copied into this test's project (relative paths)."""
    shutil.copytree(champion_template / "data", project / "data")
    return project
