"""Helpers shared by the Dagster-level tests: a small fast configuration and an in-process job run."""

from pathlib import Path
from typing import Any

import dagster as dg

from ct_assets.definitions import defs

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
WEAK = {"num_iterations": 2, "num_leaves": 2}


def small(**override: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A small, fast configuration; tables given here merge over it."""
    tables: dict[str, dict[str, Any]] = {
        "retrain": {"min_new_rows": 1000},
        "dataset": {"min_train_rows": 200, "golden_min_rows_per_slice": 50},
        "gate": {"min_slice_rows": 100},
        "training": {"num_iterations": 30},
    }
    for name, values in override.items():
        tables[name] = {**tables.get(name, {}), **values}
    return tables


def run(
    instance: dg.DagsterInstance,
    job: str,
    *,
    selection: list[str] | None = None,
    op_config: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """Execute one of the project's jobs in-process on `instance`, quietly, without raising."""
    run_config: dict[str, Any] = dict(QUIET)
    if op_config is not None:
        run_config["ops"] = {"champion_model": {"config": op_config}}
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config=run_config,
        asset_selection=[dg.AssetKey(k) for k in selection] if selection else None,
    )


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out
