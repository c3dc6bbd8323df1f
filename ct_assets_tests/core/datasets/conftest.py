"""Warehouses filled once for this folder through the real ingest (Great Expectations is slow to start);
each test copies one into its temporary project (support.use)."""

from datetime import timedelta
from pathlib import Path

import pytest

from ct_assets_tests.core.datasets.support import NOW, fill, frame_without_ids


@pytest.fixture(scope="package")
def base_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `data` folder of a default-schema project: 4 simulated batches ingested, 1 more landed."""
    return fill(tmp_path_factory.mktemp("base"), "[retrain]\nmin_new_rows = 1000\n", None)


@pytest.fixture(scope="package")
def rowless_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `data` folder of a project whose rows have no id (keyed by their content hash)."""
    frames = [frame_without_ids(1500, seed=s, start=NOW - timedelta(days=2 - s)) for s in (0, 1)]
    return fill(tmp_path_factory.mktemp("rowless"), '[columns]\nrow_id = ""\n', frames)
