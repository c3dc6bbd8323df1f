"""Training on Dask from a DuckLake warehouse, where every worker reads its own share of the train rows,
so that the training set need not fit in any one process (`[training] engine = "dask"` in cluster mode).

The step plans the shares (core.datasets.shares: consecutive ranges of the canonical order, even in size)
and reads the categories of the categorical features the config does not list; each worker reads its
share from the lake, encodes it with those categories, and keeps the model matrix, labels and weights
where LightGBM's data-parallel training will use them. Only small things come back to the step: each
share's row count, the sum and XOR of its row hashes (summed over the shares, they must give the data
set's recorded train hash, or nothing trains), its positive labels and its rows of the reference
profile (every k-th row of the canonical order, as the single-process profile takes them).
"""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from ct_assets.config import Settings
from ct_assets.core.datasets import shares
from ct_assets.core.datasets.training import DatasetInfo, check_rows_read
from ct_assets.core.modeling import dask_training
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.monitoring.signals import profile_stride
from ct_assets.errors import CtError
from ct_assets.store.hashing import data_hash
from ct_assets.store.warehouse import connect_reader

MASK64 = (1 << 64) - 1
READ_WAIT_SECONDS = 60


@dataclass(frozen=True)
class ShareSummary:
    """What the step learns of one worker's share."""

    rows: int
    hash_sum: int  # sum of the rows' 64-bit hashes, modulo 2**64
    hash_xor: int
    positives: int
    weighted: bool  # the rows carry sample weights (model.sample_weights)
    profile: pl.DataFrame  # the share's rows of the reference profile, features only


@dataclass(frozen=True)
class Share:
    """One worker's share, kept on that worker: the model matrix, 0/1 labels, weights (or None)."""

    x: np.ndarray
    y: np.ndarray
    weights: np.ndarray | None
    summary: ShareSummary


@dataclass(frozen=True)
class SharedTraining:
    """A model trained from shares, with what challenger cards record of its rows."""

    trained: lgbm.TrainedModel
    positives: int
    profile_rows: pl.DataFrame  # the reference profile's rows (monitoring.feature_profile takes them all)


def load_share(
    settings: Settings,
    ds: DatasetInfo,
    share: shares.ShareRange,
    features: list[dict[str, Any]],
    exploration_weight: float | None,
    stride: int,
    recompute_hashes: bool,
) -> Share:
    """Run on a worker: read the share from the lake and make it ready to train on."""
    c = settings.columns
    # Only what training, the profile and the card use: the features (a card's, which may name one the
    # config dropped since), the label and the exploration flag.
    wanted = [f["name"] for f in features] + settings.feature_names + [c.label]
    wanted += [c.exploration] if c.exploration else []
    with connect_reader(settings, wait_seconds=READ_WAIT_SECONDS) as con:
        frame = shares.read_share(
            con, settings, ds, share, columns=list(dict.fromkeys(wanted)), recompute_hashes=recompute_hashes
        )
    hashes = frame["_row_hash"].to_numpy().astype(np.uint64, copy=False)
    y = lgbm.labels(frame, settings)
    weights = lgbm.sample_weights(frame, settings.columns.exploration, exploration_weight)
    first = (-share.start) % stride  # the first row of this share at a multiple of the stride
    profile = frame.select(settings.feature_names).gather_every(stride, offset=first)
    summary = ShareSummary(
        rows=frame.height,
        hash_sum=int(hashes.sum(dtype=np.uint64)) if len(hashes) else 0,
        hash_xor=int(np.bitwise_xor.reduce(hashes)) if len(hashes) else 0,
        positives=int(y.sum()),
        weighted=weights is not None,
        profile=profile,
    )
    x = lgbm.encode(frame, features)
    del frame
    return Share(x, y, weights, summary)


def train_on_shares(
    settings: Settings,
    ds: DatasetInfo,
    params: dict[str, Any] | None = None,
    *,
    features: list[dict[str, Any]] | None = None,
    exploration_weight: float | None = None,
    budget_seconds: float | None = None,
    budget_source: str = "the training time budget",
    recompute_hashes: bool = False,
    address: str | None = None,
) -> SharedTraining:
    """Train `ds`'s train rows on the scheduler's workers, each reading its own share from the lake.

    `features` fixes the feature list and category codes (a card's, when reproducing); raises DataError
    when the shares together are not the data set's recorded rows."""
    import dask.array as da

    params = dict(settings.training if params is None else params)
    started = time.perf_counter()
    with dask_training.connected(address) as (client, address, workers):
        with connect_reader(settings, wait_seconds=READ_WAIT_SECONDS) as con:
            if features is None:
                features = lgbm.feature_spec_from(settings, shares.train_categories(con, settings, ds))
            plan = shares.plan_shares(con, settings, ds, len(workers))
        stride = profile_stride(ds.n_train)
        loaded = [
            client.submit(
                load_share,
                settings,
                ds,
                share,
                features,
                exploration_weight,
                stride,
                recompute_hashes,
                workers=[worker],
                allow_other_workers=False,
                pure=False,
            )
            for share, worker in zip(plan, workers, strict=False)
        ]
        holding = workers[: len(loaded)]  # a plan can hold fewer shares than there are workers
        # A share's task is pinned to its worker: without the watch, a lost worker's would wait forever.
        with dask_training.stopped_if_lost(client, holding) as lost:
            summaries: list[ShareSummary] = client.gather(
                [_on(client, f, w, "summary") for f, w in zip(loaded, holding, strict=True)]
            )
        if lost:
            raise dask_training.WorkerLost(
                f"Dask worker {', '.join(lost)} left the cluster while reading its share of the training "
                "rows: no model was trained; run again"
            )
        rows = sum(s.rows for s in summaries)
        got = data_hash(
            rows,
            sum(s.hash_sum for s in summaries) & MASK64,
            _xor(s.hash_xor for s in summaries),
        )
        check_rows_read(ds, "train", rows, got)
        positives = sum(s.positives for s in summaries)
        if positives in (0, rows):
            raise CtError("the training rows hold only one class; cannot train a binary model")
        columns = len(features)

        def chunks(name: str, shape: Any, dtype: Any) -> Any:
            return da.concatenate(
                [
                    da.from_delayed(_on(client, f, w, name), shape=shape(s), dtype=dtype)
                    for f, w, s in zip(loaded, workers, summaries, strict=False)
                ]
            )

        x = chunks("x", lambda s: (s.rows, columns), np.float64)
        y = chunks("y", lambda s: (s.rows,), np.int8)
        weighted = any(s.weighted for s in summaries)
        weights = chunks("weights", lambda s: (s.rows,), np.float64) if weighted else None
        booster, time_out = dask_training.fit(
            client, holding, params, features, x, y, weights, budget_seconds, budget_source
        )
    info = dask_training.engine_info(address, [s.rows for s in summaries], booster, time_out, "each worker")
    trained = lgbm.TrainedModel(booster, features, params, time.perf_counter() - started, "dask", info)
    profile = pl.concat([s.profile for s in summaries]) if summaries else pl.DataFrame()
    return SharedTraining(trained, positives, profile)


def _on(client: Any, share: Any, worker: str, name: str) -> Any:
    """A future of one attribute of a share, computed where the share lies."""
    return client.submit(
        operator.attrgetter(name), share, workers=[worker], allow_other_workers=False, pure=False
    )


def _xor(values: Any) -> int:
    out = 0
    for v in values:
        out ^= int(v)
    return out
