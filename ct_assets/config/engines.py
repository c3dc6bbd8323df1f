"""Where work runs: `[training] engine` (which engine trains a challenger) and `[cluster] executor`
(where a launched run's steps execute). The embedded defaults: single-node LightGBM, steps in process."""

from __future__ import annotations

from typing import Any

from ct_assets.errors import ConfigError

TRAINING_ENGINES = ("lightgbm", "dask")
EXECUTORS = ("in_process", "dask")


def training_engine(engine: Any, source: str) -> str:
    """[training] engine: "lightgbm" (one process, byte-reproducible) or "dask" (lightgbm.dask)."""
    if engine not in TRAINING_ENGINES:
        raise ConfigError(
            f"config {source}: [training] engine must be one of {', '.join(TRAINING_ENGINES)}, got {engine!r}"
        )
    return str(engine)


def cluster_executor(table: Any, source: str) -> str:
    """[cluster] executor: "in_process" (the default, when the table or the key is absent) or "dask".
    Only this key is read here; the table's other keys are the cluster mode's storage settings."""
    if not isinstance(table, dict):
        raise ConfigError(f"config {source}: [cluster] must be a table")
    executor = table.get("executor", "in_process")
    if executor not in EXECUTORS:
        raise ConfigError(
            f"config {source}: [cluster] executor must be one of {', '.join(EXECUTORS)}, got {executor!r}"
        )
    return str(executor)
