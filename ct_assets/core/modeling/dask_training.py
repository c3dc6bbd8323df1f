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
import threading
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
WATCH_SECONDS = 1.0  # how often training checks that its workers are still there
RESTART_SECONDS = 60
LOST_GRACE_SECONDS = 5.0  # after LightGBM fails, how long to look for a lost worker behind it


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
        workers = worker_addresses(client)
        if not workers:
            raise CtError(f"the Dask scheduler at {address} has no workers")
        yield client, address, workers


def fit(
    client: Any,
    workers: list[str],
    params: dict[str, Any],
    features: list[dict[str, Any]],
    x: Any,
    y: Any,
    weights: Any | None,
    budget_seconds: float | None,
    budget_source: str,
) -> tuple[Any, int]:
    """`DaskLGBMClassifier` fitted on dask arrays whose chunks lie on `workers`; the booster and the
    socket time-out used (minutes). Raises WorkerLost when one of `workers` leaves meanwhile."""
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
    with contextlib.redirect_stdout(sys.stderr), stopped_if_lost(client, workers) as lost:
        clf.fit(x, y, **fit_args)
    if lost:
        raise WorkerLost(
            f"Dask worker {', '.join(lost)} left the cluster while LightGBM trained on it: training "
            f"stopped and no model was saved; {_restart_survivors(client, [w for w in workers if w not in lost])}"
        )
    return clf.booster_, time_out


@contextlib.contextmanager
def stopped_if_lost(client: Any, workers: list[str]) -> Iterator[list[str]]:
    """Runs the block while watching `workers` (_watching); yields the list of lost workers, which the
    caller checks after the block. When one was lost, the block's own error (a cancelled wait, or
    LightGBM's "Socket recv error" on the worker left, raised before the watcher saw the loss: the
    scheduler is asked again for up to LOST_GRACE_SECONDS) is dropped for the caller's WorkerLost."""
    with _watching(client, workers) as lost:
        try:
            yield lost
        except lgbm.TrainingBudgetExceeded:
            raise
        except Exception:
            lost.extend(w for w in _gone(client, workers, LOST_GRACE_SECONDS) if w not in lost)
            if not lost:
                raise


def _restart_survivors(client: Any, survivors: list[str]) -> str:
    """Restart the workers that trained beside a lost one through their nannies (their LightGBM task
    can wait for the lost peer forever, holding a thread: measured stuck in LGBM_NetworkInit), but not
    the worker this step runs on. Says what was done and what is left to do, for the error message."""
    here = _current_worker()
    others = [w for w in survivors if w != here]
    after = f"restart {here} (this step's worker) before the next run" if here in survivors else "run again"
    if not others:
        return after
    try:
        answers = client.restart_workers(others, timeout=RESTART_SECONDS, raise_for_error=False)
    except ValueError as e:  # a worker started with --no-nanny cannot be restarted from here
        return f"restart {', '.join(others)} before the next run, LightGBM there may wait for the lost peer ({e})"
    failed = {w: str(a) for w, a in answers.items() if a != "OK"}
    if failed:
        return f"restarting {', '.join(failed)} failed ({'; '.join(failed.values())}): restart them by hand"
    return f"the workers that trained beside it were restarted ({', '.join(others)}); {after}"


def worker_addresses(client: Any) -> list[str]:
    """The scheduler's workers now, sorted, asked of the scheduler itself. Not `client.scheduler_info()`,
    which returns the client's cached identity after refreshing it: its periodic refresh, which keeps no
    workers, can land in between (distributed 2026.8); a training under load once saw both its workers
    "gone" that way, we believe (the watcher's false alarm, not reproduced on purpose)."""
    return sorted(client.nthreads())


def _gone(client: Any, workers: list[str], wait_seconds: float = 0.0) -> list[str]:
    """Which of `workers` the scheduler no longer has, asking until one is gone or `wait_seconds` pass
    (an unanswered question counts as none gone)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        with contextlib.suppress(Exception):
            gone = sorted(set(workers) - set(worker_addresses(client)))
            if gone:
                return gone
        if time.monotonic() >= deadline:
            return []
        time.sleep(0.2)


class WorkerLost(CtError):
    """A Dask worker left the cluster during training."""


@contextlib.contextmanager
def _watching(client: Any, workers: list[str], poll_seconds: float = WATCH_SECONDS) -> Iterator[list[str]]:
    """While the block runs, check every `poll_seconds` that each of `workers` is still in the cluster.
    When one has left, cancel every future of this client, which ends the block's wait on LightGBM: its
    training task pinned to the lost worker would otherwise wait for that worker forever. Yields the
    list the lost workers' addresses are added to."""
    from distributed import Future

    lost: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(poll_seconds):
            gone = _gone(client, workers)
            if gone:
                lost.extend(gone)
                client.cancel([Future(key, client) for key in list(client.futures)], force=True)
                return

    watcher = threading.Thread(target=watch, name="ct-dask-worker-watch", daemon=True)
    watcher.start()
    try:
        yield lost
    finally:
        done.set()
        watcher.join()


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
        booster, time_out = fit(
            client, workers[: len(bounds)], params, features, x_on, y_on, w_on, budget_seconds, budget_source
        )
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
