"""Small frames of the default schema, drawn from the simulator with a fixed seed."""

from datetime import datetime, timedelta

import numpy as np
import polars as pl

from ct_assets.common.clock import utc_now
from ct_assets.tools.simulator import SimulationOptions, generate_rows

SMALL_MODEL = {"num_iterations": 20, "num_leaves": 15, "min_data_in_leaf": 20}  # [training] of a quick model


def churn_frame(n: int, seed: int) -> pl.DataFrame:
    """n labelled rows, one second apart from 2025-01-01, ids 1..n."""
    rng = np.random.default_rng(seed)
    data = generate_rows(rng, n, SimulationOptions(batches=1, rows=n, seed=seed))
    start = datetime(2025, 1, 1)
    return pl.DataFrame(
        {
            "event_time": [start + timedelta(seconds=i) for i in range(n)],
            "row_id": np.arange(1, n + 1),
            **data,
        }
    )


def delta_frame(first_id: int, n: int, seed: int, now: datetime) -> pl.DataFrame:
    """n rows of the default schema as a producer lands them: ids from first_id, a minute apart from ten
    days before `now`, rows 3 and 11 not labelled yet."""
    rng = np.random.default_rng(seed)
    data = generate_rows(rng, n, SimulationOptions(batches=1, rows=n, seed=seed))
    label = data.pop("label")
    times = [now - timedelta(days=10) + timedelta(minutes=first_id + i) for i in range(n)]
    return pl.DataFrame(
        {"event_time": times, "row_id": np.arange(first_id, first_id + n, dtype=np.int64), **data}
    ).with_columns(
        pl.Series("label", label).scatter([3, 11], None),
        pl.col("event_time").cast(pl.Datetime("us")),
    )


def labelled_frame(n: int, seed: int, *, end: datetime | None = None) -> pl.DataFrame:
    """n rows of the default schema (simulated), ids from seed * 1e6, event times ending just before `end`."""
    rng = np.random.default_rng(seed)
    data = generate_rows(rng, n, SimulationOptions(batches=1, rows=n, seed=seed))
    end = end or utc_now() - timedelta(minutes=5)
    times = [end - timedelta(seconds=60 * (n - i)) for i in range(n)]
    return pl.DataFrame(
        {
            "event_time": times,
            "row_id": np.arange(seed * 1_000_000, seed * 1_000_000 + n, dtype=np.int64),
            **data,
        }
    ).with_columns(pl.col("event_time").cast(pl.Datetime("us")))


def relanded(frame: pl.DataFrame, first_id: int, *, flip_labels: bool = False) -> pl.DataFrame:
    """The same events (event time and features) under new ids from first_id, as real data holds them:
    distinct rows that agree on every configured value but the id (and, with flip_labels, the label)."""
    out = frame.with_columns(pl.int_range(first_id, first_id + frame.height, dtype=pl.Int64).alias("row_id"))
    return out.with_columns((1 - pl.col("label")).alias("label")) if flip_labels else out


def with_unlabelled(frame: pl.DataFrame, every: int) -> pl.DataFrame:
    """`frame` with every `every`-th row's label not arrived yet (null)."""
    index = pl.int_range(0, frame.height)
    return frame.with_columns(
        pl.when(index % every == 0).then(None).otherwise(pl.col("label")).alias("label")
    )


def frames_with_twins(end: datetime) -> list[pl.DataFrame]:
    """Four deltas ending at `end`, a few labels not arrived yet; the third re-lands 400 events of the
    first and 300 of the second (those with the other label) under new ids, so that with any reserve
    some reserve rows have content twins outside it, and some rows outside it have twins inside."""
    b1 = with_unlabelled(labelled_frame(1500, seed=11, end=end - timedelta(days=3)), 40)
    b2 = with_unlabelled(labelled_frame(1500, seed=12, end=end - timedelta(days=2)), 40)
    b3 = pl.concat(
        [relanded(b1.head(400), 20_000_000), relanded(b2.slice(100, 300), 20_000_400, flip_labels=True)]
    )
    b4 = with_unlabelled(labelled_frame(1000, seed=13, end=end - timedelta(hours=1)), 40)
    return [b1, b2, b3, b4]
