"""The wall-clock guard of a CT run executed in-process (run monitoring cannot stop those)."""

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
