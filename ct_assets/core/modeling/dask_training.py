"""LightGBM on a Dask cluster (`[training] engine = "dask"`): the train rows split evenly over the
scheduler's workers, LightGBM's data-parallel training on them (`lightgbm.dask`), one booster back.

Such a model is not reproducible byte for byte, even with `deterministic` and a seed (measured: six fits
of the same rows on two workers gave two distinct models), so `reproduce` judges it within a tolerance
(ct_assets.tools.reproduce).
LightGBM's collective listens on 0.0.0.0 on each worker (its socket wrapper hard-codes the address):
the workers' hosts belong on a private network or behind a firewall.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl

from ct_assets.config import Settings
from ct_assets.core.modeling import model as lgbm
from ct_assets.errors import CtError

SCHEDULER_ENV = "CT_DASK_SCHEDULER"
# LightGBM's socket time-out, in minutes (its default, 120, lets one lost worker hang a fit for 2 h).
DEFAULT_TIME_OUT_MINUTES = 2
CONNECT_SECONDS = 30


def scheduler_address() -> str:
    """The Dask scheduler's address, from $CT_DASK_SCHEDULER (read when training, not at import)."""
    address = os.environ.get(SCHEDULER_ENV, "").strip()
    if not address:
        raise CtError(
            f'[training] engine = "dask" needs the Dask scheduler\'s address in ${SCHEDULER_ENV} '
            "(for example tcp://127.0.0.1:8786); it is not set"
        )
    return address


def even_bounds(rows: int, parts: int) -> list[tuple[int, int]]:
    """[start, end) of `parts` consecutive slices of `rows` rows whose sizes differ by one at most."""
    parts = max(1, min(parts, rows))
    edges = [rows * i // parts for i in range(parts + 1)]
    return list(itertools.pairwise(edges))


def machines_of(booster: Any) -> int:
    """How many machines trained the booster: `num_machines` in its text's parameters (1 if absent)."""
    found = re.search(r"^\[num_machines: (\d+)\]$", booster.model_to_string(), flags=re.MULTILINE)
    return int(found.group(1)) if found else 1


def _scattered(client: Any, array: np.ndarray, bounds: list[tuple[int, int]], workers: list[str]) -> Any:
    """`array` as a dask array whose i-th chunk lives on workers[i] (LightGBM trains where data lies)."""
    import dask.array as da

    chunks = []
    for (start, end), worker in zip(bounds, workers, strict=False):
        piece = array[start:end]
        future = client.scatter(piece, workers=[worker], hash=False)
        if _current_worker() is not None:
            # From inside a task (a step on a Dask worker), scatter keeps the data on that worker
            # whatever `workers` says: copy it over to its worker.
            future = client.submit(np.array, future, workers=[worker], allow_other_workers=False, pure=False)
        chunks.append(da.from_delayed(future, shape=piece.shape, dtype=piece.dtype))
    return da.concatenate(chunks)


def _current_worker() -> str | None:
    """The address of the Dask worker this code runs on (a step run by the Dask executor), or None."""
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:
        return None


@contextlib.contextmanager
def _seceded() -> Iterator[None]:
    """Inside a Dask task (a step run by the Dask executor), leave the worker's thread pool while the
    training tasks run, so that this worker's own share of them does not wait for this very thread."""
    from distributed import rejoin, secede

    if _current_worker() is None:
        yield
        return
    secede()
    try:
        yield
    finally:
        rejoin()


@contextlib.contextmanager
def connected(address: str | None = None) -> Iterator[tuple[Any, str, list[str]]]:
    """A client of the scheduler at `address` (default $CT_DASK_SCHEDULER), the address and the sorted
    worker addresses; inside a Dask task, with this thread seceded (see _seceded)."""
    from distributed import Client

    address = address or scheduler_address()
    try:
        client = Client(address, timeout=CONNECT_SECONDS)
    except OSError as e:
        raise CtError(f"cannot reach the Dask scheduler at {address} (${SCHEDULER_ENV}): {e}") from None
    with client, _seceded():
        workers = sorted(client.scheduler_info()["workers"])
        if not workers:
            raise CtError(f"the Dask scheduler at {address} has no workers")
        yield client, address, workers


def fit(
    client: Any,
    params: dict[str, Any],
    features: list[dict[str, Any]],
    x: Any,
    y: Any,
    weights: Any | None,
    budget_seconds: float | None,
    budget_source: str,
) -> tuple[Any, int]:
    """`DaskLGBMClassifier` fitted on dask arrays whose chunks lie on the workers; the booster and the
    socket time-out used (minutes)."""
    import lightgbm as lgb

    fit_args: dict[str, Any] = {
        "feature_name": [f["name"] for f in features],
        "categorical_feature": lgbm.categorical_names(features),
    }
    if weights is not None:
        fit_args["sample_weight"] = weights
    if budget_seconds is not None:
        # Runs on the workers: a wall-clock deadline, since perf_counter differs between processes.
        deadline = lgbm.budget_callback(
            budget_seconds, time.time(), lgbm.num_rounds(params), budget_source, clock=time.time
        )
        fit_args["callbacks"] = [deadline]
    time_out = int(params.get("time_out", DEFAULT_TIME_OUT_MINUTES))
    clf = lgb.DaskLGBMClassifier(client=client, **{**params, "time_out": time_out})
    # lightgbm.dask prints its progress ("Finding random open ports ..."): stdout is the caller's.
    with contextlib.redirect_stdout(sys.stderr):
        clf.fit(x, y, **fit_args)
    return clf.booster_, time_out


def train(
    train_frame: pl.DataFrame,
    settings: Settings,
    params: dict[str, Any] | None = None,
    *,
    features: list[dict[str, Any]] | None = None,
    budget_seconds: float | None = None,
    budget_source: str = "the training time budget",
    weights: np.ndarray | None = None,
    address: str | None = None,
) -> lgbm.TrainedModel:
    """Train like `model.train`, but with `lightgbm.dask.DaskLGBMClassifier` on the workers of the
    scheduler at `address` (default $CT_DASK_SCHEDULER), one even slice of the rows on each worker:
    this process holds every row (the embedded warehouse; on DuckLake each worker reads its own share,
    core.modeling.dask_shares)."""
    params, features, x, y = lgbm.training_input(train_frame, settings, params, features)
    started = time.perf_counter()
    with connected(address) as (client, address, workers):
        bounds = even_bounds(len(y), len(workers))
        x_on, y_on = (_scattered(client, a, bounds, workers) for a in (x, y))
        w_on = None if weights is None else _scattered(client, weights, bounds, workers)
        booster, time_out = fit(client, params, features, x_on, y_on, w_on, budget_seconds, budget_source)
    info = engine_info(address, [end - start for start, end in bounds], booster, time_out, "this process")
    return lgbm.TrainedModel(booster, features, params, time.perf_counter() - started, "dask", info)


def engine_info(address: str, rows: list[int], booster: Any, time_out: int, read_by: str) -> dict[str, Any]:
    """The card's "dask" entry."""
    return {
        "scheduler": address,
        "workers": len(rows),
        "rows_per_worker": rows,
        "rows_read_by": read_by,  # "this process" (then scattered) or "each worker" (its own share)
        # What LightGBM's collective actually joined: Dask may move a partition off its worker.
        "machines": machines_of(booster),
        "time_out_minutes": time_out,
    }
