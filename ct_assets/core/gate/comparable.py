"""Rows both models can score, when champion and challenger use different features.

After a feature is added to the config (or removed from it), the new model and the one trained before
coexist. A row stored before the feature existed holds NULL in it, not because the value was missing
but because nobody sent it; scoring such rows with the model that uses the feature, against one that
does not, measures the schema change rather than the model (a golden set built before the feature
existed would make the new model look like it forgot). So each evaluation set is compared on the rows
stored with every feature one model uses and the other does not (the columns each batch was stored
with are recorded: store.evolution), and the report says how many rows that left and why. Rows lacking a
feature both models use are kept: both score them the same way.

When fewer than [gate] min_slice_rows rows are left, the golden set is shown but not compared (the
recent holdout decides); the recent holdout is then compared on all its rows, saying so.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl

from ct_assets.config import Settings
from ct_assets.core.gate.results import GOLDEN
from ct_assets.core.modeling import model as lgbm
from ct_assets.store.evolution import batches_lacking

BATCH_COLUMN = "_batch_id"


@dataclass(frozen=True)
class Restricted:
    """One evaluation set as the gate compares it."""

    frame: pl.DataFrame
    note: str = ""  # what was left out, and why ("" when nothing was)
    not_compared: str = ""  # why the set is not compared at all ("" when it is)


def differing_features(models: list[lgbm.LoadedModel | None]) -> list[str]:
    """Features one of the models uses and another does not."""
    used = [{f["name"] for f in m.features} for m in models if m is not None]
    if len(used) < 2:
        return []
    return sorted(set().union(*used) - set.intersection(*used))


def restrict(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    frames: dict[str, pl.DataFrame],
    models: list[lgbm.LoadedModel | None],
) -> dict[str, Restricted]:
    """Each frame (with its BATCH_COLUMN, dropped here) restricted to the rows both models can score."""
    differ = differing_features(models)
    lacking = batches_lacking(con, differ) if differ else []
    out = {}
    for name, frame in frames.items():
        keep = frame[BATCH_COLUMN].is_in(lacking) if lacking else None
        frame = frame.drop(BATCH_COLUMN)
        if keep is None or not keep.any():
            out[name] = Restricted(frame)
            continue
        keep = ~keep
        n, k = frame.height, int(keep.sum())
        without = f"{n - k:,} landed without {', '.join(differ)}"
        if k >= settings.gate.min_slice_rows:
            out[name] = Restricted(
                frame.filter(keep),
                f"compared on the {k:,} of {n:,} rows stored with every feature both models use ({without})",
            )
        elif name == GOLDEN:
            out[name] = Restricted(
                frame.head(0),
                not_compared=f"only {k:,} of its {n:,} rows were stored with every feature both models use "
                f"({without}), fewer than [gate] min_slice_rows {settings.gate.min_slice_rows}; the recent "
                "holdout decides",
            )
        else:
            out[name] = Restricted(
                frame,
                f"compared on all {n:,} rows: only {k:,} were stored with every feature both models use "
                f"({without}), fewer than [gate] min_slice_rows",
            )
    return out


def scorable_by(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, model: lgbm.LoadedModel) -> pl.DataFrame:
    """The rows of `frame` (with its BATCH_COLUMN, dropped here) stored with every feature `model` uses."""
    lacking = batches_lacking(con, [f["name"] for f in model.features])
    kept = frame.filter(~frame[BATCH_COLUMN].is_in(lacking)) if lacking else frame
    return kept.drop(BATCH_COLUMN)
