"""The wall-clock guard of a CT run executed in-process (run monitoring cannot stop those), and the tags
that let a run left STARTED by a killed worker be recovered."""

import os
import socket
import time

import dagster as dg

from ct_assets.config import Settings


def seconds_left(context: dg.AssetExecutionContext, settings: Settings) -> float:
    """What remains of [guardrails] max_run_seconds for this run; fails the step once it is spent."""
    stats = context.instance.get_run_stats(context.run_id)
    started = stats.start_time or time.time()
    limit = settings.guardrails.max_run_seconds
    left = limit - (time.time() - started)
    if left <= 0:
        raise dg.Failure(
            f"CT run stopped: it has run {time.time() - started:.0f} s, past its wall-clock budget "
            f"([guardrails] max_run_seconds = {limit:g}); the champion is unchanged"
        )
    return left


def tag_run_worker(context: dg.AssetExecutionContext) -> None:
    """Tag the run with the pid and host of the process executing it (the CLI tags its own in-process
    runs; this covers runs the daemon launched), so that `recover_dead_runs` can mark the run failed if
    that process dies, instead of leaving it STARTED with the sensors waiting on it."""
    from ct_assets.common.run_processes import leave_marker, markers_home
    from ct_assets.defs.constants import HOST_TAG, PID_TAG

    run = context.instance.get_run_by_id(context.run_id)
    if run is not None and PID_TAG not in run.tags:
        # The marker first: once the tag is there, the run is recoverable, and its process must be known.
        leave_marker(markers_home(context.instance.root_directory))
        context.instance.add_run_tags(
            context.run_id, {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
        )
