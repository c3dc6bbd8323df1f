"""`[training] engine = "dask"` through the real loop (issue 14): a `ct-assets cycle` trains the challenger
with lightgbm.dask on two `dask worker` processes, promotes it, its card says dask, and `ct-assets
reproduce` retrains it there and reports it within tolerance, with the golden AUCs and the largest score
difference; then a CT run launched with `[cluster] executor = "dask"` trains its challenger from a step on a
worker. Runs in a loopback-only network namespace: LightGBM's collective listens on 0.0.0.0."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import pytest

from ct_assets.config import load_settings
from ct_assets.core.datasets.golden import read_golden
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.modeling.metrics import roc_auc
from ct_assets.store.warehouse import connect_reader
from ct_assets.tools.reproduce import DASK_AUC_TOLERANCE
from ct_assets_tests.helpers.cli import cli, ok, one_json
from ct_assets_tests.helpers.config import small, write_config
from ct_assets_tests.helpers.dask import (
    absolute_paths,
    dask_cluster,
    inside_loopback_netns,
    launch_job,
    step_pids,
)

pytest.importorskip("distributed", reason="Dask is not installed (the cluster venv has it)")

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

RUN_TIMEOUT = 300
REPRODUCED = re.compile(
    r"^(v\d+): reproducible: within tolerance \(trained on Dask\): golden AUC (\S+) retrained vs (\S+) "
    r"original, difference (\S+) \(tolerance (\S+)\); largest score difference (\S+) over (\d+) golden "
    r"rows; from (\d+) rows with data hash (\S+) \("
)


def test_a_cycle_on_the_dask_engine_promotes_and_reproduces_within_tolerance(
    request: pytest.FixtureRequest, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not inside_loopback_netns(request):
        return
    tables = small(training={"engine": "dask"}, cluster={"executor": "dask"}, paths=absolute_paths(project))
    config = write_config(project / "dask.toml", tables)
    monkeypatch.setenv("CT_ASSETS_CONFIG", str(config))  # for the Dask workers and `dagster job execute`
    with dask_cluster(tmp_path / "dask", workers=2) as cluster:
        env = {"CT_DASK_SCHEDULER": cluster.address}
        ok(cli(project, "init", config=config, extra_env=env))
        ok(cli(project, "simulate", "--batches", "3", "--rows", "10000", "--seed", "3", config=config))
        # `cycle` executes its runs in its own process; the challenger trains on the workers.
        out = one_json(ok(cli(project, "cycle", "--json", config=config, extra_env=env)))
        assert out["verdict"] == "promoted", out
        version = out["champion_version"]
        reproduced = ok(cli(project, "reproduce", version, config=config, extra_env=env))
        without_scheduler = cli(project, "reproduce", version, config=config)
        # New rows, ingested and trained on by runs launched with the Dask executor: their steps run on
        # the workers, and the challenger step trains on the workers from there.
        ok(cli(project, "simulate", "--batches", "1", "--rows", "10000", "--seed", "3", config=config))
        for job in ("ingest_job", "ct_job"):
            launched = launch_job(project, job, cluster.address, tmp_path / f"{job}.log")
            assert launched.wait(timeout=RUN_TIMEOUT) == 0, (tmp_path / f"{job}.log").read_text()[-4000:]
        worker_pids = {p.pid for p in cluster.workers}

    settings = load_settings(config)
    card = json.loads((settings.paths.models / version / lgbm.CARD_FILE).read_text())
    assert card["engine"] == "dask"
    assert card["dask"]["scheduler"] == cluster.address
    assert card["dask"]["workers"] == card["dask"]["machines"] == 2  # both workers joined LightGBM's network
    parts = card["dask"]["rows_per_worker"]
    assert sum(parts) == card["rows"]["train"] and max(parts) - min(parts) <= 1
    assert "machines: " in (settings.paths.models / version / lgbm.MODEL_FILE).read_text()

    print(reproduced.stdout.strip())  # the figures, shown with -rP
    match = REPRODUCED.match(reproduced.stdout.strip())
    assert match, reproduced.stdout
    again, original, gap, tolerance, largest = map(float, match.group(2, 3, 4, 5, 6))
    assert match.group(1) == version and tolerance == DASK_AUC_TOLERANCE
    assert abs(again - original) <= DASK_AUC_TOLERANCE and gap == pytest.approx(
        abs(again - original), abs=2e-4
    )
    assert 0.0 <= largest < 1.0
    # The original's golden AUC, computed here from the stored model and the golden rows it names.
    with connect_reader(settings) as con:
        golden = read_golden(con, settings, card["golden_hash"])
    golden = golden.filter(golden[settings.columns.label].is_not_null())
    stored = lgbm.load_version(settings.paths.models, version)
    assert original == pytest.approx(roc_auc(lgbm.labels(golden, settings), stored.predict(golden)), abs=1e-4)
    assert int(match.group(7)) == golden.height and int(match.group(8)) == card["rows"]["train"]

    instance = dg.DagsterInstance.get()
    (ct,) = instance.get_run_records(dg.RunsFilter(job_name="ct_job"), limit=1)  # the newest
    steps = step_pids(instance, ct.dagster_run.run_id, dg.DagsterEventType.STEP_SUCCESS)
    assert "challenger_model" in steps and set(steps.values()) <= worker_pids, (steps, worker_pids)
    second = json.loads((settings.paths.models / "v0002" / lgbm.CARD_FILE).read_text())
    assert (
        second["engine"] == "dask"
        and second["dask"]["machines"] == 2
        and second["run_id"] == ct.dagster_run.run_id
    )

    assert without_scheduler.returncode == 1
    assert "CT_DASK_SCHEDULER" in without_scheduler.stderr and "Traceback" not in without_scheduler.stderr
