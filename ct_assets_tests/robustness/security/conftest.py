"""The pipeline on SQL-looking column names, run once for this folder."""

from datetime import timedelta

import dagster as dg
import pytest

from ct_assets.common.clock import utc_now
from ct_assets.config import load_settings
from ct_assets.store.warehouse import init_warehouse
from ct_assets_tests.helpers.config import default_tables, small, write_config
from ct_assets_tests.helpers.data import labelled_frame
from ct_assets_tests.helpers.runs import run
from ct_assets_tests.robustness.security.odd_names import (
    ODD_ID,
    ODD_LABEL,
    ODD_SLICE,
    ODD_TIME,
    RENAMED,
    Pipeline,
)


@pytest.fixture(scope="package")
def odd_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """Three landed files ingested, then a CT run (golden set, training data, challenger, validation,
    promotion), on a config whose column names look like SQL, on a fresh warehouse and Dagster instance."""
    root = tmp_path_factory.mktemp("odd_names")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    features = {RENAMED.get(k, k): v for k, v in default_tables()["features"].items()}
    columns = {"event_time": ODD_TIME, "label": ODD_LABEL, "row_id": ODD_ID, "slices": [ODD_SLICE, "channel"]}
    config = write_config(root / "config.toml", {**small(), "columns": columns, "features": features})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("CT_ASSETS_CONFIG", str(config))
        mp.setenv("DAGSTER_HOME", str(home))
        s = load_settings(config)
        init_warehouse(s)
        end = utc_now() - timedelta(minutes=5)
        for i in range(3):
            frame = labelled_frame(2500, seed=10 + i, end=end - timedelta(days=3 - i)).rename(RENAMED)
            frame.write_parquet(s.paths.landing / f"delta_{i}.parquet")
        with dg.instance_for_test(temp_dir=str(home)) as inst:
            ingest = run(inst, "ingest_job")
            ct = run(inst, "ct_job")
    return Pipeline(root, s, ingest, ct)
