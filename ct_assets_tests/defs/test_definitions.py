"""The Definitions load, and the asset graph matches a literal snapshot so that a rename shows in review;
the sensors' interval can be set from the environment."""

from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ct_assets.config import CONFIG_ENV_VAR
from ct_assets.definitions import defs
from ct_assets.defs import jobs
from ct_assets.errors import ConfigError
from ct_assets_tests.helpers.config import write_config

# asset -> (group, upstream assets)
ASSETS = {
    "raw_deltas": ("ingestion", []),
    "golden_dataset": ("datasets", ["raw_deltas"]),
    "training_dataset": ("datasets", ["golden_dataset", "raw_deltas"]),
    "challenger_model": ("training", ["training_dataset"]),
    "validation_report": ("validation", ["challenger_model", "training_dataset"]),
    "champion_model": ("registry", ["validation_report"]),
    "champion_performance": ("monitoring", ["champion_model", "raw_deltas"]),
    "predictions": ("predictions", ["champion_model", "raw_deltas"]),
}

# (asset, check) -> blocking
CHECKS = {
    ("raw_deltas", "raw_deltas_schema_valid"): False,
    ("raw_deltas", "raw_deltas_required_not_null"): False,
    ("raw_deltas", "raw_deltas_values_valid"): False,
    ("raw_deltas", "raw_deltas_row_ids_unique"): False,
    ("raw_deltas", "raw_deltas_newest_file_fresh"): False,
    ("training_dataset", "training_dataset_fresh"): False,
    ("training_dataset", "training_dataset_excludes_golden"): True,
    ("training_dataset", "training_dataset_exploration_share"): False,
    ("validation_report", "challenger_no_regression_golden"): True,
    ("validation_report", "challenger_no_regression_holdout"): True,
    ("validation_report", "challenger_no_slice_regression"): True,
    ("validation_report", "challenger_above_floor"): True,
    ("validation_report", "challenger_predictions_sane"): True,
    ("validation_report", "challenger_secondary_metrics_hold"): True,
    ("champion_model", "champion_model_data_lag_within_limit"): False,
}

# job -> (assets it materializes, checks it runs)
JOBS = {
    "ingest_job": (
        ["champion_performance", "predictions", "raw_deltas"],
        [
            "champion_model_data_lag_within_limit",
            "raw_deltas_newest_file_fresh",
            "raw_deltas_required_not_null",
            "raw_deltas_row_ids_unique",
            "raw_deltas_schema_valid",
            "raw_deltas_values_valid",
        ],
    ),
    "ct_job": (
        ["challenger_model", "champion_model", "golden_dataset", "training_dataset", "validation_report"],
        [
            "challenger_above_floor",
            "challenger_no_regression_golden",
            "challenger_no_regression_holdout",
            "challenger_no_slice_regression",
            "challenger_predictions_sane",
            "challenger_secondary_metrics_hold",
            "champion_model_data_lag_within_limit",
            "training_dataset_excludes_golden",
            "training_dataset_exploration_share",
            "training_dataset_fresh",
        ],
    ),
    "registry_job": (["champion_model"], ["champion_model_data_lag_within_limit"]),
    "golden_job": (["golden_dataset"], []),
    "freshness_job": ([], ["champion_model_data_lag_within_limit", "raw_deltas_newest_file_fresh"]),
}

# asset -> (fail window, warn window) of its FreshnessPolicy under the default config, shown in the UI
# (fail at the configured limit, warn halfway); other assets have none
FRESHNESS = {
    "raw_deltas": (timedelta(hours=24), timedelta(hours=12)),
    "champion_model": (timedelta(hours=168), timedelta(hours=84)),
}

# sensor -> job it targets (None: a run status sensor, which watches runs and starts none); schedules likewise
SENSORS = {"landing_sensor": "ingest_job", "retrain_sensor": "ct_job", "run_failure_alert_sensor": None}
RUN_STATUS_SENSORS = {"run_failure_alert_sensor"}
SCHEDULES = {"freshness_schedule": "freshness_job"}


def _check_specs() -> list[dg.AssetCheckSpec]:
    specs = [s for a in defs.assets or [] for s in a.check_specs]  # type: ignore[union-attr]
    specs += [s for c in defs.asset_checks or [] for s in c.check_specs]  # type: ignore[union-attr]
    return specs


def test_definitions_are_loadable() -> None:
    dg.Definitions.validate_loadable(defs)


def test_asset_graph_snapshot() -> None:
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    actual = {
        name: (spec.group_name, sorted(d.asset_key.to_user_string() for d in spec.deps))
        for name, spec in specs.items()
    }
    assert actual == ASSETS


def test_asset_check_snapshot() -> None:
    actual = {(s.asset_key.to_user_string(), s.name): s.blocking for s in _check_specs()}
    assert actual == CHECKS
    graph_checks = {
        (k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys
    }
    assert graph_checks == set(CHECKS)


def freshness_windows(definitions: dg.Definitions) -> dict[str, tuple[timedelta, timedelta | None]]:
    """asset -> (fail window, warn window) of its freshness policy, for the assets that have one."""
    actual = {}
    for spec in definitions.resolve_all_asset_specs():
        policy = spec.freshness_policy
        if policy is not None:
            assert isinstance(policy, dg.FreshnessPolicy)
            warn = policy.warn_window.to_timedelta() if policy.warn_window else None  # type: ignore[attr-defined]
            actual[spec.key.to_user_string()] = (policy.fail_window.to_timedelta(), warn)  # type: ignore[attr-defined]
    return actual


def test_freshness_policy_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    from ct_assets.defs.build import build_definitions

    assert freshness_windows(defs) == FRESHNESS
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    assert freshness_windows(build_definitions()) == FRESHNESS


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (
            {"freshness": {"max_file_age_hours": 2}, "retrain": {"max_champion_age_hours": 36}},
            {
                "raw_deltas": (timedelta(hours=2), timedelta(hours=1)),
                "champion_model": (timedelta(hours=36), timedelta(hours=18)),
            },
        ),
        # 0 turns the champion's staleness limit off: no policy; Dagster's windows are a minute at least
        (
            {"freshness": {"max_file_age_hours": 0.01}, "retrain": {"max_champion_age_hours": 0}},
            {"raw_deltas": (timedelta(minutes=1), None)},
        ),
    ],
)
def test_freshness_policies_follow_the_configured_limits(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    limits: dict[str, dict[str, Any]],
    expected: dict[str, tuple[timedelta, timedelta | None]],
) -> None:
    from ct_assets.defs.build import build_definitions

    monkeypatch.setenv(CONFIG_ENV_VAR, str(write_config(tmp_path / "limits.toml", limits)))
    built = build_definitions()
    dg.Definitions.validate_loadable(built)
    assert freshness_windows(built) == expected


def test_job_snapshot() -> None:
    names = {j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")}
    assert names == set(JOBS)
    graph = defs.resolve_asset_graph()
    for job in (jobs.ingest_job, jobs.ct_job, jobs.registry_job, jobs.golden_job, jobs.freshness_job):
        assets = sorted(k.to_user_string() for k in job.selection.resolve(graph))
        checks = sorted(k.name for k in job.selection.resolve_checks(graph))
        assert (assets, checks) == JOBS[job.name], job.name


def test_sensors_and_schedules_snapshot() -> None:
    sensors = {s.name: s for s in defs.sensors or []}
    assert set(sensors) == set(SENSORS)
    assert {
        n for n, s in sensors.items() if isinstance(s, dg.RunStatusSensorDefinition)
    } == RUN_STATUS_SENSORS
    assert {name: (s.job_name if s.targets else None) for name, s in sensors.items()} == SENSORS
    assert {name: s.default_status for name, s in sensors.items()} == {
        name: dg.DefaultSensorStatus.RUNNING for name in SENSORS
    }
    schedules = {s.name: s for s in defs.schedules or []}  # type: ignore[union-attr]
    assert {name: s.job_name for name, s in schedules.items()} == SCHEDULES
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in schedules.values())


def test_every_asset_and_check_has_a_description() -> None:
    missing = [
        s.key.to_user_string() for s in defs.resolve_all_asset_specs() if not (s.description or "").strip()
    ]
    missing += [
        f"{s.asset_key.to_user_string()}:{s.name}"
        for s in _check_specs()
        if not (s.description or "").strip()
    ]
    assert missing == []
    assert len(_check_specs()) == len(CHECKS)


def test_every_job_has_a_description() -> None:
    assert all(
        (j.description or "").strip()
        for j in (jobs.ingest_job, jobs.ct_job, jobs.registry_job, jobs.golden_job, jobs.freshness_job)
    )


def test_the_sensor_interval_can_be_set_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from ct_assets.defs.build import build_definitions
    from ct_assets.defs.constants import SENSOR_INTERVAL_ENV

    def intervals() -> dict[str, int | None]:
        return {
            s.name: s.minimum_interval_seconds
            for s in build_definitions().sensors or []
            if s.name != "run_failure_alert_sensor"
        }

    monkeypatch.delenv(SENSOR_INTERVAL_ENV, raising=False)
    assert intervals() == {"landing_sensor": 1, "retrain_sensor": 10}
    monkeypatch.setenv(SENSOR_INTERVAL_ENV, "1")
    assert intervals() == {"landing_sensor": 1, "retrain_sensor": 1}
    for bad in ("0", "-1", "1.5", "soon"):
        monkeypatch.setenv(SENSOR_INTERVAL_ENV, bad)
        with pytest.raises(ConfigError, match=SENSOR_INTERVAL_ENV):
            build_definitions()
