"""Configuration errors: each bad value refused on one line naming its key and file, a missing file
named, and the defaults left intact by a failed load."""

from pathlib import Path

import pytest

from ct_assets.config import CONFIG_ENV_VAR, load_settings
from ct_assets.errors import ConfigError
from ct_assets_tests.helpers.config import write_text as write

# A [features] table in a user file replaces the default one whole; these cases bring their own and
# clear the slices, so that the only thing wrong in them is the one value under test.
OWN_FEATURES = '[columns]\nslices = []\n[features.amount]\nkind = "numeric"\n'

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
