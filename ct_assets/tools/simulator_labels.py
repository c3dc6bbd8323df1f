"""Labels that arrive late in the synthetic stream (`simulate --label-delay N [--late-share P]`).

Each batch lands without the labels of a share P of its labelled rows (all of them by default; rows the
`--unlabelled` share left without a label never get one). Those labels are written at once as a label
file (row_id, label, and [columns] label_time when configured: the row's event time plus N batch spans,
never later than now) into the state folder, and the file lands in the landing folder right after the
delta of batch b + N, counted along the stream across calls. Which rows are withheld is drawn from a
random stream of its own (seed, batch, LATE_STREAM): the same seed and options give byte-identical files,
and the deltas' other values are those of the stream without a delay. Labels still due when the stream
stops land with a later call.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from ct_assets.config import Settings

LATE_STREAM = 0x1A7E
FOLDER = "simulator_labels"


def withhold(
    frame: pl.DataFrame,
    settings: Settings,
    *,
    seed: int,
    batch: int,
    share: float,
    delay: timedelta,
    now: datetime,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The batch as it lands (the withheld labels null) and the label file of the withheld labels."""
    rng = np.random.default_rng([seed, batch, LATE_STREAM])
    late = pl.Series(rng.random(frame.height) < share) & frame["label"].is_not_null()
    labels = frame.filter(late).select("row_id", "label")
    lt = settings.columns.label_time
    if lt:
        known = frame.filter(late)["event_time"] + delay
        labels = labels.with_columns(known.clip(upper_bound=now).alias(lt))
    landed = frame.with_columns(pl.when(late).then(None).otherwise(pl.col("label")).alias("label"))
    return landed, labels


def schedule(
    settings: Settings, state: dict, labels: pl.DataFrame, *, batch: int, due: int, fmt: str
) -> None:
    """Keep the label file of `batch` in the state folder until the stream reaches batch `due`."""
    folder = settings.paths.state / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    name = f"labels_{batch:06d}.{fmt}"
    tmp = folder / f".{name}.part"
    if fmt == "parquet":
        labels.write_parquet(tmp)
    else:
        labels.write_csv(tmp)
    os.replace(tmp, folder / name)
    state.setdefault("pending_labels", []).append({"file": name, "due": due})


def land_due(settings: Settings, state: dict, batch: int) -> list[Path]:
    """Move the label files due by `batch` into the landing folder (the landing convention: a hidden
    name first, renamed when complete); returns their paths."""
    folder = settings.paths.state / FOLDER
    landed, kept = [], []
    for item in state.get("pending_labels", []):
        if item["due"] > batch:
            kept.append(item)
            continue
        source = folder / item["file"]
        final = settings.paths.landing / item["file"]
        part = settings.paths.landing / f".{item['file']}.part"
        shutil.copyfile(source, part)  # a fresh file: its time is the landing time
        os.replace(part, final)
        source.unlink()
        landed.append(final)
    state["pending_labels"] = kept
    return landed
