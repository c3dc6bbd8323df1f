"""Names from the config: feature and column names that LightGBM or one line cannot keep are refused at
load, and SQL-looking names are quoted safely through ingest, training and promotion."""

import json
from pathlib import Path

import pytest
import tomli_w

from ct_assets.config import LIGHTGBM_NAME_CHARS, load_settings
from ct_assets.core import registry
from ct_assets.core.modeling import model as lgbm
from ct_assets.errors import ConfigError
from ct_assets.store.sql import fetch_value, quote
from ct_assets.store.warehouse import connect_reader
from ct_assets_tests.helpers.config import default_tables
from ct_assets_tests.robustness.security.odd_names import (
    ODD_FEATURE,
    ODD_ID,
    ODD_LABEL,
    ODD_SLICE,
    ODD_TIME,
    Pipeline,
)


@pytest.mark.parametrize(
    "name",
    [
        'a"; DROP TABLE raw_deltas; --',
        "monthly spend",
        "a,b",
        "a:b",
        "a[0]",
        "{x}",
        "tab\there",
        "line\nbreak",
        "para\u2028graph",
    ],
)
def test_a_feature_name_lightgbm_cannot_keep_is_refused_at_load(project: Path, name: str) -> None:
    features = default_tables()["features"]
    features[name] = features.pop("support_calls")
    path = project / "odd.toml"
    path.write_text(tomli_w.dumps({"features": features}))
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    message = str(err.value)
    assert len(message.splitlines()) == 1, message
    assert "feature name" in message or "not a usable column name" in message, message
    assert name.encode("unicode_escape").decode() in message  # named, control characters escaped
    # Without the offending characters the same config loads.
    clean = "".join(ch for ch in name if not (ch in LIGHTGBM_NAME_CHARS or ch.isspace()))
    features[clean] = features.pop(name)
    path.write_text(tomli_w.dumps({"features": features}))
    assert clean in load_settings(path).feature_names


@pytest.mark.parametrize("role", ["event_time", "label", "row_id"])
def test_a_column_name_with_a_line_break_is_refused_on_one_line(project: Path, role: str) -> None:
    path = project / "odd.toml"
    path.write_text(f"[columns]\n{role} = {json.dumps('x' + chr(10) + 'DROP TABLE ledger')}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert len(str(err.value).splitlines()) == 1, str(err.value)
    assert "not a usable column name" in str(err.value)


def test_sql_looking_names_are_quoted_safely_through_ingest_training_and_promotion(
    odd_pipeline: Pipeline,
) -> None:
    s = odd_pipeline.settings
    assert (s.columns.event_time, s.columns.label, s.columns.row_id) == (ODD_TIME, ODD_LABEL, ODD_ID)
    assert odd_pipeline.ingest.success
    assert odd_pipeline.ct.success, [e.message for e in odd_pipeline.ct.all_events if e.is_failure]
    with connect_reader(s) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        columns = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'raw_deltas' "
                "ORDER BY ordinal_position"
            ).fetchall()
        ]
        rows = fetch_value(con, "SELECT count(*) FROM raw_deltas")
        ids = fetch_value(con, f"SELECT count(DISTINCT {quote(ODD_ID)}) FROM raw_deltas")
        logged = fetch_value(con, "SELECT count(*) FROM ingest_log WHERE status = 'ingested'")
        champion = registry.champion(con)
        golden_slices = json.loads(fetch_value(con, "SELECT slice_counts FROM golden_versions"))
    assert {"raw_deltas", "ledger", "models", "ingest_log", "golden_rows"} <= tables
    assert columns[:3] == [ODD_TIME, ODD_ID, ODD_FEATURE] and ODD_LABEL in columns and ODD_SLICE in columns
    assert rows == ids == 7500 and logged == 3
    assert champion == "v0001"
    assert set(golden_slices) == {ODD_SLICE, "channel"}
    loaded = lgbm.load_version(s.paths.models, champion)
    assert loaded.booster.feature_name()[:1] == [ODD_FEATURE]
    assert ODD_SLICE in [f["name"] for f in loaded.features]
