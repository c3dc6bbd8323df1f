"""Column names that look like SQL, and a pipeline run on a config using them: three files ingested,
then a CT run, on a fresh warehouse and Dagster instance."""

import dataclasses
from pathlib import Path

import dagster as dg

from ct_assets.config import Settings

ODD_TIME = 'when"; DROP TABLE raw_deltas; --'
ODD_LABEL = "y'); DROP TABLE ledger; --"
ODD_ID = 'id" OR "1"="1'
ODD_SLICE = "region');DROP_TABLE_models;--"
ODD_FEATURE = "tenure');DELETE_FROM_ingest_log;--"
RENAMED = {
    "event_time": ODD_TIME,
    "label": ODD_LABEL,
    "row_id": ODD_ID,
    "region": ODD_SLICE,
    "tenure_months": ODD_FEATURE,
}


@dataclasses.dataclass
class Pipeline:
    root: Path
    settings: Settings
    ingest: dg.ExecuteInProcessResult
    ct: dg.ExecuteInProcessResult
