"""The champion's score cache in the CT loop: the next cycle reuses the champion's cached scores and the
gate sees exactly the figures a fresh prediction gives."""

import json
from collections.abc import Callable

import dagster as dg
import pytest

from ct_assets.config import Settings
from ct_assets.core.datasets.golden import active_golden, read_golden
from ct_assets.core.gate import score_cache
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.modeling.metrics import all_metrics
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.runs import run


@pytest.mark.slow
def test_the_next_cycle_reuses_the_champions_scores_and_gates_on_the_same_figures(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    settings = make_settings(**small())
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=3, rows=4000, seed=7))
    assert run(instance, "ingest_job").success
    assert run(instance, "ct_job").success  # v0001, the champion

    simulate(settings, SimulationOptions(batches=1, rows=1500, seed=8))
    ingest_landed_files(settings)
    second = run(instance, "ct_job")  # v0002 against v0001, on a holdout that moved forward
    assert second.success, [e.message for e in second.all_events if e.is_failure]
    (mat,) = second.asset_materializations_for_node("validation_report")
    reused_text = str(mat.metadata["champion_scores_reused"].value)
    reused, _, total, _ = reused_text.replace(",", "").split()  # "<reused> of <total> rows"
    assert 0 < int(reused) < int(total)  # the golden set and the older holdout rows came from the cache

    # The figures the gate used for the champion are those of a fresh prediction.
    report = json.loads((settings.paths.reports / "v0002.json").read_text())
    with connect_reader(settings) as con:
        golden = active_golden(con)
        assert golden is not None
        frame = read_golden(con, settings, golden.golden_hash)
    fresh = all_metrics(
        lgbm.labels(frame, settings),
        lgbm.load_version(settings.paths.models, "v0001").predict(frame),
        settings.decision_threshold,
    )
    for name, value in fresh.items():
        assert report["metrics"]["golden"]["champion"][name] == pytest.approx(value, abs=1e-12), name
    cached = sorted(p.name for p in (settings.paths.state / score_cache.FOLDER).iterdir())
    assert cached == ["v0001.parquet", "v0002.parquet"]
