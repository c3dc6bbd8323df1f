"""The configuration: defaults, merging a user file over them, path resolution, and one-line errors."""

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
from ct_assets.errors import ConfigError

# A [features] table in a user file replaces the default one whole; these cases bring their own and
# clear the slices, so that the only thing wrong in them is the one value under test.
OWN_FEATURES = '[columns]\nslices = []\n[features.amount]\nkind = "numeric"\n'


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


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


BAD_VALUES = {
    "unknown top-level key": ('colour = "red"\n', ["colour", "not a known setting"]),
    "unknown key in a table": ("[gate]\ntolerence = 0.1\n", ["[gate] tolerence", "not a known setting"]),
    "unknown key in a feature": (
        OWN_FEATURES + "maximum = 3\n",
        ["[features.amount] maximum", "not a known setting"],
    ),
    "text for a number": ('[gate]\ntolerance = "small"\n', ["[gate] tolerance", "number"]),
    "nan for a number": ("[gate]\ntolerance = nan\n", ["[gate] tolerance", "number"]),
    "bool for an integer": ("[gate]\nmin_slice_rows = true\n", ["[gate] min_slice_rows", "integer"]),
    "float for an integer": ("[retrain]\nmin_new_rows = 10.5\n", ["[retrain] min_new_rows", "integer"]),
    "zero retrain threshold": ("[retrain]\nmin_new_rows = 0\n", ["[retrain] min_new_rows"]),
    "fraction out of range": ("[dataset]\nholdout_fraction = 0.95\n", ["[dataset] holdout_fraction"]),
    "threshold out of range": ("decision_threshold = 1.5\n", ["decision_threshold"]),
    "value instead of a table": ('paths = "data"\n', ["paths", "must be a table"]),
    "number for a path": ("[paths]\nwarehouse = 3\n", ["[paths] warehouse"]),
    "empty path": ('[paths]\nlanding = ""\n', ["[paths] landing"]),
    "unknown metric": ('primary_metric = "accuracy"\n', ["primary_metric", "accuracy"]),
    "unsupported task": ('task = "regression"\n', ["task", "regression"]),
    "one label class": ("[columns]\nlabel_classes = [0]\n", ["[columns] label_classes"]),
    "three label classes": ("[columns]\nlabel_classes = [0, 1, 2]\n", ["[columns] label_classes"]),
    "equal label classes": ("[columns]\nlabel_classes = [1, 1]\n", ["[columns] label_classes"]),
    "mixed label classes": ('[columns]\nlabel_classes = [0, "1"]\n', ["[columns] label_classes"]),
    "boolean label classes": ("[columns]\nlabel_classes = [false, true]\n", ["[columns] label_classes"]),
    "float label classes": ("[columns]\nlabel_classes = [0.0, 1.0]\n", ["[columns] label_classes"]),
    "label classes not a list": ('[columns]\nlabel_classes = "01"\n', ["[columns] label_classes"]),
    "unknown row id type": ('[columns]\nrow_id_type = "uuid"\n', ["[columns] row_id_type", "uuid"]),
    "slices not a list": ('[columns]\nslices = "region"\n', ["[columns] slices"]),
    "slice on a numeric feature": (
        '[columns]\nslices = ["tenure_months"]\n',
        ["[columns] slices", "'tenure_months'", "categorical"],
    ),
    "slice that is no feature": (
        '[columns]\nslices = ["country"]\n',
        ["[columns] slices", "'country'", "categorical"],
    ),
    "label is also a feature": (
        '[columns]\nlabel = "region"\n',
        ["'region'", "two roles", "[columns] label", "[features.region]"],
    ),
    "event time is also the row id": (
        '[columns]\nevent_time = "row_id"\n',
        ["'row_id'", "two roles", "[columns] event_time", "[columns] row_id"],
    ),
    "label starting with _": ('[columns]\nlabel = "_label"\n', ["[columns] label", "'_label'", "'_'"]),
    "event time starting with _": (
        '[columns]\nevent_time = "_batch_id"\n',
        ["[columns] event_time", "'_batch_id'", "'_'"],
    ),
    "row id starting with _": ('[columns]\nrow_id = "_row_hash"\n', ["[columns] row_id", "'_row_hash'"]),
    "feature starting with _": (
        '[columns]\nslices = []\n[features._secret]\nkind = "numeric"\n',
        ["feature", "'_secret'", "'_'"],
    ),
    "unknown feature kind": (
        '[columns]\nslices = []\n[features.amount]\nkind = "text"\n',
        ["[features.amount] kind", "text"],
    ),
    "feature without kind": (
        "[columns]\nslices = []\n[features.amount]\nmin = 0\n",
        ["[features.amount] kind", "missing"],
    ),
    "feature not a table": (
        '[columns]\nslices = []\n[features]\namount = "numeric"\n',
        ["[features.amount]"],
    ),
    "no features": ("[columns]\nslices = []\n[features]\n", ["[features]"]),
    "min above max": (OWN_FEATURES + "min = 5\nmax = 1\n", ["[features.amount] min", "max"]),
    "categories on a numeric feature": (
        OWN_FEATURES + 'categories = ["a"]\n',
        ["[features.amount] categories"],
    ),
    "duplicate categories": (
        '[columns]\nslices = []\n[features.colour]\nkind = "categorical"\ncategories = ["a", "a"]\n',
        ["[features.colour] categories"],
    ),
    "range on a categorical feature": (
        '[columns]\nslices = []\n[features.colour]\nkind = "categorical"\nmax = 3\n',
        ["[features.colour] min"],
    ),
    "required not a bool": (OWN_FEATURES + 'required = "yes"\n', ["[features.amount] required"]),
    "non-binary objective": ('[training]\nobjective = "regression"\n', ["[training] objective"]),
    "webhook not http": ('[alerts]\nwebhook_url = "ftp://example.org"\n', ["[alerts] webhook_url"]),
    "not TOML at all": ("[gate\ntolerance = 0.1\n", ["not valid TOML"]),
}


@pytest.mark.parametrize(("text", "fragments"), list(BAD_VALUES.values()), ids=list(BAD_VALUES))
def test_bad_value_gives_one_line_config_error(project: Path, text: str, fragments: list[str]) -> None:
    path = write(project / "bad.toml", text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_missing_config_file_is_named(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = project / "nope.toml"
    monkeypatch.setenv(CONFIG_ENV_VAR, str(missing))
    with pytest.raises(ConfigError, match="does not exist") as info:
        load_settings()
    assert str(missing) in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_user_file_leaves_defaults_usable(project: Path) -> None:
    """A failed load must not corrupt the defaults that later loads merge over."""
    with pytest.raises(ConfigError):
        load_settings(write(project / "bad.toml", "[gate]\ntolerance = -1\n"))
    assert load_settings().gate.tolerance == 0.01


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
