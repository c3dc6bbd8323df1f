"""Where a launched run's steps execute: in the run's own process (the default), or on the workers of
an existing Dask cluster (`[cluster] executor = "dask"`, the scheduler's address in $CT_DASK_SCHEDULER).

`cycle` and the other CLI commands execute their runs in process (`execute_in_process`) whatever this
says; runs launched through the instance (the daemon's sensor runs, `dagster job launch/execute`) use it.
"""

import dagster as dg

from ct_assets.config import Settings
from ct_assets.core.modeling.dask_training import SCHEDULER_ENV


def executor_for(settings: Settings) -> dg.ExecutorDefinition:
    """The executor `[cluster] executor` names; the scheduler address is read from $CT_DASK_SCHEDULER
    when a run starts (the run's process), not when the definitions load."""
    if settings.executor == "dask":
        from ct_assets.defs.dask_executor import dask_run_scoped_executor

        return dask_run_scoped_executor.configured(
            {"cluster": {"existing": {"address": {"env": SCHEDULER_ENV}}}}, name="dask_run_scoped"
        )
    # One process per run, steps in it: no per-step process start-up, and one warehouse writer per run.
    return dg.in_process_executor
