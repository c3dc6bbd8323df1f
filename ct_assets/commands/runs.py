"""Running ct_assets jobs through Dagster from the command line, on the instance at DAGSTER_HOME.

Runs execute in this process (no daemon needed) and are recorded in the instance's storage, so the
web UI shows them like any other run.
"""

import contextlib
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

import dagster as dg

from ct_assets.common.heap import long_lived
from ct_assets.common.run_processes import leave_marker, markers_home, remove_marker
from ct_assets.defs.constants import HOST_TAG, PID_TAG
from ct_assets.defs.instance import instance, recover_dead_runs
from ct_assets.errors import CtError

LOG_LEVEL_ENV = "CT_ASSETS_LOG_LEVEL"  # Dagster's console log level for runs the CLI executes


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout (Python and C libraries alike) to stderr for the duration:
    stdout is kept for the one JSON line of --json."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def recover(inst: dg.DagsterInstance | None = None) -> list[str]:
    """recover_dead_runs, saying on stderr which runs it marked failed. Every command that may start a
    run, or decide that none is due, calls it first: a run left STARTED must not block anything."""
    dead = recover_dead_runs(inst or instance())
    for run_id in dead:
        print(f"ct-assets: run {run_id} was left running by a killed process; marked failed", file=sys.stderr)
    return dead


def run_job(
    name: str,
    *,
    tags: dict[str, str] | None = None,
    run_config: dict | None = None,
    asset_selection: list[str] | None = None,
) -> dg.ExecuteInProcessResult:
    """Execute one of the project's jobs in this process, recorded in the DAGSTER_HOME instance."""
    with long_lived():  # the definitions and the instance's storage live as long as the process
        from ct_assets.definitions import defs

        job = defs.resolve_job_def(name)
        inst = instance()
    recover(inst)
    tags = {**(tags or {}), PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    # Quiet by default: the CLI prints its own summary, and every event is in the run's log in the UI.
    level = os.environ.get(LOG_LEVEL_ENV, "CRITICAL").upper()
    config = {**(run_config or {}), "loggers": {"console": {"config": {"log_level": level}}}}
    # Left if the run does not return (this process killed, or an exception out of Dagster): the next
    # command then loads the instance to fail the run this process may have left STARTED.
    marker = leave_marker(markers_home(inst.root_directory))
    with stdout_to_stderr():
        result = job.execute_in_process(
            instance=inst,
            raise_on_error=False,
            tags=tags,
            run_config=config,
            asset_selection=[dg.AssetKey(k) for k in asset_selection] if asset_selection else None,
        )
    remove_marker(marker)
    blocked = blocking_failures(result)
    if result.success:
        state = "succeeded"
    elif blocked:
        state = "stopped by blocking checks: " + "; ".join(f"{n}: {why}" for n, why in blocked.items())
    else:
        state = f"failed: {failure_message(result)}"
    print(f"ct-assets: {name} run {result.run_id} {state}", file=sys.stderr, flush=True)
    return result


def blocking_failures(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """Blocking checks that failed in the run, whichever asset they check: name -> their one-line reason."""
    return {
        e.check_name: _one_line(e.description or "failed")
        for e in result.get_asset_check_evaluations()
        if not e.passed and e.blocking
    }


def _one_line(text: str, limit: int = 300) -> str:
    first = (text.strip().splitlines() or [""])[0]
    return first[:limit]


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """Why a run failed, as one line: the blocking checks that stopped it with their reasons, else its first
    step failure without the exception class path."""
    blocked = blocking_failures(result)
    if blocked:
        return "; ".join(f"blocking check {n} failed: {why}" for n, why in blocked.items())
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE and event.step_failure_data:
            err: Any = event.step_failure_data.error
            while (
                err is not None
                and err.cause is not None
                and err.cls_name in ("DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError")
            ):
                err = err.cause
            text = (err.message if err is not None else "step failed").strip()
            first = text.splitlines()[0] if text else "step failed"
            if ": " in first and first.split(": ", 1)[0].count(".") >= 1:
                first = first.split(": ", 1)[1]
            return f"{event.step_key}: {first}"
    return "the run failed"


def require_success(result: dg.ExecuteInProcessResult, what: str) -> None:
    if not result.success:
        raise CtError(f"{what} failed (run {result.run_id}): {failure_message(result)}")
