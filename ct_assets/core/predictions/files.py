"""Scoring a file outside the warehouse (`ct-assets predict`): validated as ingest validates a landed
file (the same reader and Great Expectations suite; the label may be absent), scored by one model,
written as Parquet.

The file is read `[ingest] chunk_rows` rows at a time and each chunk is validated, then scored, so memory
stays bounded by a chunk. The output is written under a temporary name and renamed only once every chunk
passed: a file that fails anywhere leaves no output (and an earlier output of the same name untouched).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ct_assets.config import Settings
from ct_assets.core.ingest import landing
from ct_assets.core.ingest.quality import first_failure, merge_outcomes, validate_delta
from ct_assets.core.ingest.reader import StoreError, UnreadableDelta, read_chunks, to_stored
from ct_assets.core.modeling import model as lgbm
from ct_assets.errors import DataError

OUT_SUFFIX = ".predictions.parquet"


@dataclass(frozen=True)
class FileScores:
    """What `score_file` wrote."""

    source: Path
    out: Path
    version: str
    rows: int
    positive: int  # rows decided positive at the threshold


def default_out(path: Path) -> Path:
    """`<stem>.predictions.parquet` beside the file."""
    name = path.name
    stem = next((name[: -len(x)] for x in landing.READY_SUFFIXES if name.lower().endswith(x)), path.stem)
    return path.with_name(stem + OUT_SUFFIX)


def check_paths(s: Settings, path: Path, out: Path) -> None:
    """Refuse what cannot be scored or written, before anything is read."""
    shown = landing.display_name(str(path))
    if not path.exists():
        raise DataError(f"{shown}: no such file")
    if not path.is_file():
        raise DataError(f"{shown}: not a file")
    if not path.name.lower().endswith(landing.READY_SUFFIXES):
        raise DataError(f"{shown}: not a .parquet or .csv file")
    if out.resolve() == path.resolve():
        raise DataError(f"{landing.display_name(str(out))}: the output would overwrite the file scored")
    if out.resolve().parent == s.paths.landing.resolve() and landing.is_ready_name(out.name):
        raise DataError(
            f"{landing.display_name(str(out))} is in the landing folder, where it would be ingested as a "
            "delta: pass --out with a path elsewhere"
        )


def score_file(s: Settings, path: Path, model: lgbm.LoadedModel, out: Path, now: datetime) -> FileScores:
    """Validate `path` chunk by chunk as ingest does, score it with `model`, write the row id (if rows
    have one), score, decision and model version to `out` (Parquet); raises DataError naming the file,
    the column and the rule on invalid input."""
    check_paths(s, path, out)
    shown = landing.display_name(path.name)
    unknown = [f["name"] for f in model.features if f["name"] not in s.feature_names]
    if unknown:
        raise DataError(
            f"model {model.version} needs feature {unknown[0]!r}, which the configuration does not name"
        )
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    writer: Any = None
    ids: list[pl.Series] = []
    rows = positive = 0
    outcomes: list = []
    try:
        for frame in read_chunks(path, s):
            chunk = _with_label(frame, s)
            outcomes = merge_outcomes(outcomes, validate_delta(chunk, s, now))
            failure = first_failure(outcomes)
            if failure is not None:
                raise DataError(f"{shown}: {failure.describe()}")
            stored = to_stored(chunk, s)
            scores = model.predict(stored)
            table = _output(s, stored, scores, model.version)
            if writer is None:
                import pyarrow.parquet as pq

                out.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            if s.columns.row_id:
                ids.append(stored[s.columns.row_id])
            rows += stored.height
            positive += int(np.sum(scores >= s.decision_threshold))
        if writer is None:
            raise DataError(f"{shown}: has no data rows")
        _unique_ids(s, ids, shown)
        writer.close()
        writer = None
        os.replace(tmp, out)
    except UnreadableDelta as e:
        raise DataError(f"{shown}: {e}") from None
    except StoreError as e:
        raise DataError(f"{shown}: {e}") from None
    finally:
        if writer is not None:
            writer.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return FileScores(path, out, model.version, rows, positive)


def _with_label(frame: pl.DataFrame, s: Settings) -> pl.DataFrame:
    """A file to score may come without labels: an empty label column, so the suite judges the rest."""
    label = s.columns.label
    if label in frame.columns:
        return frame
    return frame.with_columns(
        pl.lit(None, dtype=pl.String if s.columns.label_is_text else pl.Int64).alias(label)
    )


def _output(s: Settings, stored: pl.DataFrame, scores: np.ndarray, version: str) -> Any:
    """The Arrow table of one chunk's predictions: row id (if rows have one), score, decision, model version."""
    out = pl.DataFrame(
        {
            "score": pl.Series(scores, dtype=pl.Float64),
            "decision": pl.Series(scores >= s.decision_threshold, dtype=pl.Boolean),
            "model_version": pl.Series([version] * len(scores), dtype=pl.String),
        }
    )
    if s.columns.row_id:
        out = out.insert_column(0, stored[s.columns.row_id])
    return out.to_arrow()


def _unique_ids(s: Settings, ids: list[pl.Series], shown: str) -> None:
    """Row ids are unique in the whole file, as ingest requires (the suite sees one chunk at a time)."""
    if len(ids) < 2:
        return
    everything = pl.concat(ids)
    repeated = everything.filter(everything.is_duplicated()).unique().sort()
    if len(repeated):
        raise DataError(
            f"{shown}: column '{s.columns.row_id}' fails expect_column_values_to_be_unique "
            f"(observed e.g. {', '.join(repr(x) for x in repeated.head(3).to_list())})"
        )
