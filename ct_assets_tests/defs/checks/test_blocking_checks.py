"""The blocking checks of validation_report: each fails for its kind of challenger and stops promotion
(the ledger records the block), all pass for a better challenger; the sanity check on every kind of
insane prediction, through the gate."""

from collections.abc import Callable
from typing import Any

import dagster as dg
import numpy as np
import pytest

from ct_assets.config import Settings
from ct_assets.core import gate, registry
from ct_assets_tests.helpers.config import WEAK, small
from ct_assets_tests.helpers.runs import check_evaluations as evaluations
from ct_assets_tests.helpers.runs import records, run
from ct_assets_tests.helpers.warehouse import champion, ledger

REG_GOLDEN = "challenger_no_regression_golden"
REG_HOLDOUT = "challenger_no_regression_holdout"
SLICE = "challenger_no_slice_regression"
FLOOR = "challenger_above_floor"
SANE = "challenger_predictions_sane"
BLOCKING = [REG_GOLDEN, REG_HOLDOUT, SLICE, FLOOR, SANE]


def newest_ledger_entry(settings: Settings) -> registry.LedgerEntry:
    return ledger(settings, limit=1)[0]


BLOCKED_CASES = [
    pytest.param({"training": WEAK}, [REG_GOLDEN, REG_HOLDOUT, SLICE], id="weaker-challenger"),
    pytest.param(
        {"training": WEAK, "gate": {"slice_tolerance": 1.0}},
        [REG_GOLDEN, REG_HOLDOUT],
        id="overall-regression",
    ),
    pytest.param(
        {"training": WEAK, "gate": {"tolerance": 1.0, "golden_tolerance": 1.0}},
        [SLICE],
        id="slice-regression-only",
    ),
    # Another seed on the same data, every tolerance wide open: only the floor can fail.
    pytest.param(
        {
            "training": {"seed": 7},
            "gate": {"metric_floor": 0.99, "tolerance": 1.0, "slice_tolerance": 1.0, "golden_tolerance": 1.0},
        },
        [FLOOR],
        id="below-floor",
    ),
    # No leaf can hold that many rows: trees without splits, one constant prediction.
    pytest.param({"training": {"min_data_in_leaf": 1_000_000}}, BLOCKING, id="constant-predictions"),
]


@pytest.mark.usefixtures("with_champion")
@pytest.mark.parametrize(("tables", "expected_failed"), BLOCKED_CASES)
def test_blocking_checks_fail_and_stop_promotion(
    make_settings: Callable[..., Settings],
    instance: dg.DagsterInstance,
    tables: dict[str, dict[str, Any]],
    expected_failed: list[str],
) -> None:
    settings = make_settings(**small(**tables))
    result = run(instance, "ct_job")
    assert not result.success

    checks = evaluations(result, "validation_report")
    assert {n: checks[n].passed for n in BLOCKING} == {n: n not in expected_failed for n in BLOCKING}
    assert all(checks[n].severity == dg.AssetCheckSeverity.ERROR for n in BLOCKING)
    assert all(checks[n].metadata["champion_version"].value == "v0001" for n in BLOCKING)
    assert all(checks[n].metadata["challenger_version"].value == "v0002" for n in BLOCKING)

    failures = result.get_step_failure_events()
    assert [f.step_key for f in failures] == ["validation_report"]
    error = failures[0].step_failure_data.error
    assert error is not None and error.cls_name == "DagsterAssetCheckFailedError"
    assert "champion_model" not in {
        m.asset_key.to_user_string() for m in result.get_asset_materialization_events()
    }

    assert champion(settings) == "v0001"
    entry = newest_ledger_entry(settings)
    assert (entry.action, entry.version, entry.champion_after) == ("blocked", "v0002", "v0001")
    assert entry.reason == "failed " + ", ".join(expected_failed)

    if FLOOR in expected_failed:
        assert "below the floor" in (checks[FLOOR].description or "")
    if SANE in expected_failed:
        assert "constant model" in (checks[SANE].description or "")


@pytest.mark.usefixtures("with_champion")
def test_blocking_checks_pass_for_a_better_challenger(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    # Make a weak model the champion first (blocked, then approved by a person) ...
    settings = make_settings(**small(training=WEAK))
    assert not run(instance, "ct_job").success
    approve = {"action": "approve", "version": "v0002", "reason": "set up a weak champion"}
    assert run(instance, "registry_job", op_config=approve).success
    assert champion(settings) == "v0002"

    # ... then a properly trained challenger must clear every blocking check and be promoted.
    settings = make_settings(**small())
    result = run(instance, "ct_job")
    assert result.success
    checks = evaluations(result, "validation_report")
    assert {n: checks[n].passed for n in BLOCKING} == dict.fromkeys(BLOCKING, True)
    for name in (REG_GOLDEN, REG_HOLDOUT):
        (overall,) = records(checks[name].metadata["details"])
        assert overall["status"] == "ok"
        assert overall["delta"] > 0.01  # compared with the champion, and clearly better
    gated = [r for r in records(checks[SLICE].metadata["details"]) if r["status"] in ("ok", "underpowered")]
    assert gated, "slices were compared"
    assert champion(settings) == "v0003"
    entry = newest_ledger_entry(settings)
    assert (entry.action, entry.version, entry.champion_before) == ("promoted", "v0003", "v0002")


def _eval_set(predictions: np.ndarray) -> gate.EvalSet:
    rng = np.random.default_rng(0)
    y = (rng.random(len(predictions)) < 0.3).astype(np.int8)
    return gate.EvalSet(name="golden", y=y, slices={}, challenger=predictions, champion=None)


# A LightGBM binary model always predicts finite probabilities in (0, 1), so the asset path can only
# produce the constant case (above); non-finite and out-of-range scores are tested on the gate itself,
# which is the code the validation_report check reports.
@pytest.mark.parametrize(
    ("predictions", "problem"),
    [
        pytest.param(np.linspace(0.01, 0.99, 500), None, id="sane"),
        pytest.param(np.full(500, 0.3), "constant model", id="constant"),
        pytest.param(np.r_[np.linspace(0.01, 0.99, 499), np.nan], "non-finite", id="nan"),
        pytest.param(np.r_[np.linspace(0.01, 0.99, 499), np.inf], "non-finite", id="inf"),
        pytest.param(np.linspace(-0.5, 1.5, 500), "outside [0, 1]", id="out-of-range"),
    ],
)
def test_predictions_sane_check_on_the_gate(
    settings: Settings, predictions: np.ndarray, problem: str | None
) -> None:
    outcome = gate.evaluate(settings, [_eval_set(predictions)]).checks[SANE]
    assert outcome.passed is (problem is None)
    if problem:
        assert problem in outcome.summary
