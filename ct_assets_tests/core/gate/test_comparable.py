"""Models trained on different feature sets (issue 13, point 2): the gate compares them on the rows stored
with every feature one uses and the other does not; a golden set with too few of them is shown, not
compared, and does not make a model with a new feature look like it forgot."""

import json
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.core import gate
from ct_assets.core.gate import comparable, report
from ct_assets.store.warehouse import connect_writer, transaction
from ct_assets_tests.core.gate.test_gate import scored

BASE = ["event_time", "row_id", "tenure_months", "label"]


def model(*features: str) -> Any:
    """What the gate reads of a model here: its feature list."""
    return SimpleNamespace(features=[{"name": f, "kind": "numeric"} for f in features])


def log_batches(settings: Settings, columns: dict[int, list[str]]) -> None:
    with connect_writer(settings) as con, transaction(con):
        for batch, cols in columns.items():
            con.execute(
                "INSERT INTO ingest_log (entry_id, logged_at, file_name, file_hash, status, batch_id, kind, "
                "row_columns, content_columns) VALUES (?, now(), ?, ?, 'ingested', ?, 'rows', ?, '[]')",
                [batch, f"f{batch}", f"h{batch}", batch, json.dumps(cols)],
            )


def frame(batches: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"row_id": range(len(batches)), "_batch_id": batches})


def test_sets_are_restricted_to_rows_stored_with_the_features_only_one_model_uses(
    warehouse: Settings,
) -> None:
    log_batches(warehouse, {1: BASE, 2: BASE, 3: [*BASE, "tenure_years"], 4: [*BASE, "tenure_years"]})
    old, new = model("tenure_months"), model("tenure_months", "tenure_years")
    frames = {"golden": frame([1] * 300 + [3] * 250), "holdout": frame([2] * 50 + [4] * 100)}
    with connect_writer(warehouse) as con:
        assert comparable.differing_features([new, old]) == ["tenure_years"]
        same = comparable.restrict(con, warehouse, frames, [old, model("tenure_months")])
        out = comparable.restrict(con, warehouse, frames, [new, old])
        for_old = comparable.scorable_by(con, frames["golden"], old)
        for_new = comparable.scorable_by(con, frames["golden"], new)
    assert all(r.note == r.not_compared == "" and r.frame.height == frames[n].height for n, r in same.items())
    golden, holdout = out["golden"], out["holdout"]
    assert golden.frame.height == 250 and golden.not_compared == ""
    assert golden.note == (
        "compared on the 250 of 550 rows stored with every feature both models use (300 landed without tenure_years)"
    )
    # The holdout keeps too few (100 < [gate] min_slice_rows 200): compared on all its rows, saying so.
    assert holdout.frame.height == 150 and "compared on all 150 rows: only 100 were stored" in holdout.note
    assert "_batch_id" not in golden.frame.columns
    assert (for_old.height, for_new.height) == (550, 250)


def test_a_golden_set_built_before_a_feature_existed_is_shown_not_compared(warehouse: Settings) -> None:
    log_batches(warehouse, {1: BASE, 2: [*BASE, "tenure_years"]})
    with connect_writer(warehouse) as con:
        out = comparable.restrict(
            con,
            warehouse,
            {"golden": frame([1] * 400 + [2] * 10), "holdout": frame([2] * 400)},
            [model("tenure_months", "tenure_years"), model("tenure_months")],
        )
    assert out["golden"].frame.height == 0
    assert out["golden"].not_compared.startswith("only 10 of its 410 rows were stored with every feature")
    assert out["holdout"].note == ""


@pytest.mark.parametrize("better", [True, False])
def test_the_gate_decides_on_the_holdout_when_the_golden_set_is_not_compared(
    settings: Settings, better: bool
) -> None:
    y, p, region = scored(3000, seed=1)
    challenger = scored(3000, seed=1, strength=2.5 if better else 0.6)[1]
    empty = np.array([])
    sets = [
        gate.EvalSet(
            "golden", empty, {"region": empty}, empty, empty, not_compared="no row has tenure_years"
        ),
        gate.EvalSet(
            "holdout", y, {"region": region}, challenger, p, note="compared on the 3,000 of 3,100 rows"
        ),
    ]
    result = gate.evaluate(settings, sets)
    golden = result.checks["challenger_no_regression_golden"]
    assert golden.passed and golden.summary == "golden: not compared: no row has tenure_years"
    assert result.checks["challenger_no_regression_holdout"].summary.endswith(
        "(compared on the 3,000 of 3,100 rows)"
    )
    assert result.checks[gate.FLOOR_CHECK].summary.endswith("on holdout")
    assert [c.status for c in result.comparisons if c.set == "golden"] == ["not_compared"]
    assert result.passed is better
    if not better:
        assert result.failed_checks[0] == "challenger_no_regression_holdout"
    json.dumps(result.to_json(), allow_nan=True)  # the report's JSON
    html = report.render(result, sets, {"challenger_version": "v0002", "golden_compared": golden.summary})
    assert "not compared: no row both models can score" in html
