"""Python API: is a new model safe to deploy in place of the champion, judged on fixed test data?

    from ct_assets.validation import validate_new_model
    ok = validate_new_model("new/model.txt", "champion/model.txt", "test.parquet")

It runs exactly the gate of the `validation_report` asset (overall and per-slice comparison with the
configured tolerances, the absolute floor, sane predictions), on the caller's data and model paths.
`test_data` is held to [gate] tolerance and slice_tolerance, as the recent holdout is; an optional
`golden_data` (keyword only) is judged as the golden set is, for catastrophic forgetting only
([gate] golden_tolerance).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import polars as pl

from ct_assets.config import Settings, load_settings
from ct_assets.core import gate
from ct_assets.core.modeling import model as lgbm
from ct_assets.errors import DataError

TEST_SET = "test"


def _frame(test_data: Any) -> pl.DataFrame:
    if isinstance(test_data, pl.DataFrame):
        return test_data
    if isinstance(test_data, str | os.PathLike):
        path = Path(test_data)
        if not path.is_file():
            raise DataError(f"test data {path} does not exist")
        return pl.read_parquet(path)
    try:
        import pandas as pd

        if isinstance(test_data, pd.DataFrame):
            return pl.from_pandas(test_data)
    except ImportError:  # pandas is a dependency of Great Expectations; kept optional here
        pass
    raise DataError(
        f"test_data must be a polars or pandas frame or a Parquet path, got {type(test_data).__name__}"
    )


def evaluate_new_model(
    model_path: str | os.PathLike,
    champion_model_path: str | os.PathLike | None,
    test_data: Any,
    settings: Settings | None = None,
    *,
    golden_data: Any = None,
) -> gate.GateResult:
    """The full gate result (every check with its summary and the comparison table)."""
    s = settings or load_settings()
    new = lgbm.load(Path(model_path), features_from=s)
    champion = lgbm.load(Path(champion_model_path), features_from=s) if champion_model_path else None
    sets = [_eval_set(TEST_SET, test_data, s, new, champion)]
    if golden_data is not None:
        sets.append(_eval_set(gate.GOLDEN, golden_data, s, new, champion))
    return gate.evaluate(s, sets)


def _eval_set(
    name: str, data: Any, s: Settings, new: lgbm.LoadedModel, champion: lgbm.LoadedModel | None
) -> gate.EvalSet:
    frame = _frame(data)
    missing = [c for c in [*s.feature_names, s.columns.label, *s.columns.slices] if c not in frame.columns]
    if missing:
        raise DataError(f"{name} data lacks the column {missing[0]!r} named by the config {s.source}")
    frame = frame.filter(pl.col(s.columns.label).is_not_null())
    if frame.is_empty():
        raise DataError(f"{name} data holds no labelled rows")
    return gate.EvalSet(
        name=name,
        y=lgbm.labels(frame, s),
        slices={c: frame[c].cast(pl.String).fill_null("(null)").to_numpy() for c in s.columns.slices},
        challenger=new.predict(frame),
        champion=champion.predict(frame) if champion is not None else None,
    )


def validate_new_model(
    model_path: str | os.PathLike,
    champion_model_path: str | os.PathLike | None,
    test_data: Any,
    *,
    golden_data: Any = None,
) -> bool:
    """Load both models, score `test_data` (polars or pandas frame, or a Parquet path), compare overall
    and per slice under the configured gate, and return whether the new model is safe to deploy.

    `golden_data`, when given (same forms), is also compared, as the golden set is: a catastrophic-only
    bound ([gate] golden_tolerance). Reads the paths the caller gives (unlike the registry, which reads
    only its models folder). The configuration is the one named by CT_ASSETS_CONFIG (defaults built in).
    """
    return evaluate_new_model(model_path, champion_model_path, test_data, golden_data=golden_data).passed
