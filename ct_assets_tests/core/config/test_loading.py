"""The configuration: defaults, the file taken from the environment, merging a user file over the
defaults table by table, path resolution, and the effective configuration round-tripping."""

import dataclasses
import tomllib
from pathlib import Path

import pytest

import ct_assets
from ct_assets.config import (
    CONFIG_ENV_VAR,
    Settings,
    default_config_text,
    effective_config_toml,
    load_settings,
)
from ct_assets_tests.helpers.config import write_text as write


def test_defaults_load(project: Path) -> None:
    s = load_settings()
    assert s.source == "defaults"
    assert s.task == "binary"
    assert s.primary_metric == "roc_auc"
    assert s.decision_threshold == 0.5
    assert s.columns.event_time == "event_time"
    assert s.columns.label == "label"
    assert s.columns.label_classes == (0, 1)
    assert s.columns.row_id == "row_id"
    assert s.columns.slices == ("region", "channel")
    assert s.feature_names == [
        "tenure_months",
        "monthly_spend",
        "support_calls",
        "usage_hours",
        "discount_rate",
        "satisfaction",
        "region",
        "channel",
        "plan",
    ]
    assert s.categorical_features == ["region", "channel", "plan"]
    assert s.feature("region").categories == ("north", "south", "east", "west")
    assert s.feature("tenure_months").required is True
    assert s.feature("usage_hours").required is False
    assert s.min_new_rows == 10000
    assert s.gate.tolerance == 0.01
    assert s.gate.min_slice_rows == 200
    assert s.training["num_iterations"] == 200
    assert s.training["deterministic"] is True
    assert s.stored_columns[0] == "event_time"
    assert s.stored_columns[1] == "row_id"
    assert s.stored_columns[-1] == "label"


def test_config_file_is_taken_from_the_environment(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(project / "mine.toml", "[retrain]\nmin_new_rows = 123\n")
    monkeypatch.setenv(CONFIG_ENV_VAR, str(path))
    s = load_settings()
    assert s.min_new_rows == 123
    assert s.source == str(path)


def test_user_file_merges_over_defaults_table_by_table(project: Path) -> None:
    path = write(
        project / "user.toml",
        'primary_metric = "log_loss"\n'
        "[gate]\ntolerance = 0.05\n"
        "[training]\nnum_iterations = 7\n"
        '[columns]\nslices = ["region"]\n',
    )
    s = load_settings(path)
    assert s.primary_metric == "log_loss"
    assert s.gate.tolerance == 0.05
    # the rest of each table comes from the defaults
    assert s.gate.slice_tolerance == 0.03
    assert s.gate.min_slice_rows == 200
    assert s.gate.metric_floor == 0.6
    assert s.training["num_iterations"] == 7
    assert s.training["learning_rate"] == 0.05
    assert s.training["seed"] == 42
    assert s.columns.slices == ("region",)
    assert s.columns.label == "label"
    assert s.columns.row_id == "row_id"
    assert s.decision_threshold == 0.5
    assert len(s.features) == 9


def test_features_table_is_replaced_whole(project: Path) -> None:
    path = write(
        project / "user.toml",
        '[features.region]\nkind = "categorical"\n'
        '[features.channel]\nkind = "categorical"\ncategories = ["a", "b"]\n'
        '[features.amount]\nkind = "numeric"\nmin = 0\n',
    )
    s = load_settings(path)
    assert s.feature_names == ["region", "channel", "amount"]
    # nothing of the default feature list leaks in, not even the categories of a feature with the same name
    assert s.feature("region").categories is None
    assert s.feature("region").required is False
    assert s.feature("channel").categories == ("a", "b")
    assert s.feature("amount").min == 0.0
    assert s.feature("amount").max is None
    with pytest.raises(KeyError):
        s.feature("tenure_months")


def test_relative_paths_resolve_against_the_working_directory(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = load_settings()
    assert s.paths.warehouse == project / "data" / "warehouse.duckdb"
    assert s.paths.landing == project / "data" / "landing"
    package_dir = Path(ct_assets.__file__).resolve().parent
    for p in dataclasses.astuple(s.paths):
        assert p.is_absolute()
        assert project in p.parents
        assert package_dir not in p.parents

    # a config file in another folder: its relative paths still resolve against the cwd, not the file
    absolute = project / "elsewhere" / "models"
    path = write(
        project / "conf" / "ct.toml",
        f'[paths]\nwarehouse = "wh/w.duckdb"\nlanding = "./in"\nmodels = "{absolute}"\n',
    )
    s = load_settings(path)
    assert s.paths.warehouse == project / "wh" / "w.duckdb"
    assert s.paths.landing == project / "in"
    assert s.paths.models == absolute

    other = project / "run_here"
    other.mkdir()
    monkeypatch.chdir(other)
    assert load_settings(path).paths.warehouse == other / "wh" / "w.duckdb"
    assert load_settings(path, cwd=project).paths.warehouse == project / "wh" / "w.duckdb"


def _same_settings(a: Settings, b: Settings) -> None:
    assert dataclasses.replace(a, source="x") == dataclasses.replace(b, source="x")


def test_effective_config_round_trips_through_tomllib(project: Path) -> None:
    s = load_settings()
    text = effective_config_toml(s)
    assert text.startswith("#")
    assert tomllib.loads(text) == s.raw == tomllib.loads(default_config_text())

    dumped = write(project / "effective.toml", text)
    _same_settings(load_settings(dumped), s)


def test_effective_config_of_a_user_file_round_trips(project: Path) -> None:
    user = write(
        project / "user.toml",
        '[columns]\nlabel_classes = ["stay", "churn"]\nslices = ["region"]\n'
        '[features.region]\nkind = "categorical"\ncategories = ["n", "s"]\nrequired = true\n'
        '[features.amount]\nkind = "numeric"\nmin = 0.5\n'
        "[training]\nnum_iterations = 3\n"
        '[paths]\nwarehouse = "w/x.duckdb"\n',
    )
    s = load_settings(user)
    text = effective_config_toml(s)
    assert str(user) in text.splitlines()[0]
    parsed = tomllib.loads(text)
    assert parsed == s.raw
    assert parsed["features"] == {
        "region": {"kind": "categorical", "categories": ["n", "s"], "required": True},
        "amount": {"kind": "numeric", "min": 0.5},
    }
    assert parsed["training"]["num_iterations"] == 3
    assert parsed["training"]["learning_rate"] == 0.05

    again = load_settings(write(project / "effective.toml", text))
    _same_settings(again, s)
    assert again.columns.label_classes == ("stay", "churn")
    assert again.columns.label_is_text
    assert again.paths.warehouse == project / "w" / "x.duckdb"
