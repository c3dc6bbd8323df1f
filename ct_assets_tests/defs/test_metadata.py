"""The metadata tables the UI shows: column types from the values, floats at four significant digits."""

import math

from ct_assets.defs.metadata import table
from ct_assets_tests.helpers.runs import records


def test_floats_show_four_significant_digits_other_values_as_they_are() -> None:
    rows = [
        {"set": "golden", "rows": 872, "auc": 0.7799442896935933, "delta": -0.000123456, "big": 12345.678},
        {"set": "holdout", "rows": 1590, "auc": math.nan, "delta": None, "big": 1.0},
    ]
    value = table(rows)
    assert {c.name: c.type for c in value.schema.columns} == {
        "set": "string",
        "rows": "int",
        "auc": "float",
        "delta": "float",
        "big": "float",
    }
    assert records(value) == [
        {"set": "golden", "rows": 872, "auc": 0.7799, "delta": -0.0001235, "big": 12350.0},
        {"set": "holdout", "rows": 1590, "auc": None, "delta": None, "big": 1.0},
    ]
    assert rows[0]["auc"] == 0.7799442896935933  # the caller's rows are left alone
