"""`ct-assets backtest DELTAS_DIR`: replay delta files, in name order, through the real loop (the same
configuration, assets, gate and registry) in a scratch warehouse and a scratch Dagster instance, then
score the served model and the baselines on each next step's labelled rows.

Isolation: the configuration is copied with every [paths] entry pointed into a scratch folder (a
temporary directory, or `--workdir`), DAGSTER_HOME points at a folder inside it, and both environment
variables are restored when the replay ends, however it ends. The user's warehouse, folders and
Dagster instance are never opened. The loop's own output (run lines, Dagster and library logs) goes to
`backtest.log` in the scratch folder, so that stderr carries the progress line only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import tomli_w

from ct_assets.commands.cycle import run_cycle
from ct_assets.config import CONFIG_ENV_VAR, Settings, load_settings
from ct_assets.core import registry
from ct_assets.errors import CtError
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets.tools.backtest import (
    Backtest,
    StepRecord,
    delta_files,
    evaluate,
    scratch_config,
    wall_clock_notes,
)
from ct_assets.tools.backtest_report import Progress, render_html

DAGSTER_HOME_ENV = "DAGSTER_HOME"
HTML_NAME = "backtest.html"
LOG_NAME = "backtest.log"
STEPS_NAME = "steps.json"


def run_backtest(
    settings: Settings,
    deltas_dir: Path,
    *,
    every: int = 3,
    workdir: Path | None = None,
    progress: TextIO | None = None,
) -> tuple[Backtest, dict[str, Any]]:
    """Replay every delta file of `deltas_dir` through one cycle each, then score the policies.

    Returns the backtest and its run facts (`html` path, `workdir` or None, `seconds`,
    `seconds_per_step`). Raises CtError with a one-line message on bad input."""
    files = delta_files(deltas_dir)
    if every < 1:
        raise CtError(f"--every must be at least 1, got {every}")
    out_dir = workdir if workdir is not None else deltas_dir
    _require_usable(workdir, out_dir)
    started = time.perf_counter()
    with _scratch_root(workdir) as root:
        scratch, records = _replay(settings, files, root, progress or sys.stderr)
        replay_seconds = time.perf_counter() - started
        bt = evaluate(scratch, records, every=every, baseline_dir=root / "baselines")
    bt.notes = wall_clock_notes(settings, len(files)) + bt.notes
    seconds = time.perf_counter() - started
    meta = {
        "deltas_dir": str(deltas_dir),
        "config": settings.source,
        "workdir": str(workdir) if workdir is not None else None,
        "seconds": round(seconds, 1),
        "seconds_per_step": round(replay_seconds / len(files), 2),
    }
    html_path = out_dir.resolve() / HTML_NAME
    tmp = html_path.with_name(f".{HTML_NAME}.{os.getpid()}.tmp")
    tmp.write_text(render_html(bt, meta), encoding="utf-8")
    os.replace(tmp, html_path)
    meta["html"] = str(html_path)
    return bt, meta


def _require_usable(workdir: Path | None, out_dir: Path) -> None:
    """Refuse, before anything runs, a work folder that holds something and a page we cannot write."""
    if workdir is not None:
        if workdir.exists() and (not workdir.is_dir() or any(workdir.iterdir())):
            raise CtError(
                f"--workdir {workdir} is not an empty folder: give a new or empty one "
                "(a backtest never reuses an earlier scratch warehouse)"
            )
        workdir.mkdir(parents=True, exist_ok=True)
    if not os.access(out_dir, os.W_OK):
        raise CtError(f"cannot write {out_dir / HTML_NAME}: the folder is not writable (use --workdir DIR)")


@contextlib.contextmanager
def _scratch_root(workdir: Path | None) -> Iterator[Path]:
    if workdir is not None:
        yield workdir.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="ct-backtest-") as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def scratch_environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration, then restore each to its value (or absence) before."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        os.environ.update(values)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _output_to(log_path: Path) -> Iterator[None]:
    """Send stdout and stderr (Python and C libraries alike) to `log_path` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log_path.open("a", encoding="utf-8") as log:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _replay(
    settings: Settings, files: list[Path], root: Path, stream: TextIO
) -> tuple[Settings, list[StepRecord]]:
    """Land each file in the scratch landing folder and run one cycle, in-process, on the scratch
    instance; one StepRecord per file."""
    config_path = root / "config.toml"
    config_path.write_text(tomli_w.dumps(scratch_config(settings, root)), encoding="utf-8")
    home = root / "dagster"
    home.mkdir(exist_ok=True)
    records: list[StepRecord] = []
    progress = Progress(stream, len(files))
    try:
        with scratch_environment({DAGSTER_HOME_ENV: str(home), CONFIG_ENV_VAR: str(config_path)}):
            scratch = load_settings(config_path)
            init_warehouse(scratch)
            for step, path in enumerate(files, 1):
                progress.starting(step, path.name)
                records.append(_step(scratch, step, path, root / LOG_NAME))
                progress.finished(records[-1])
                # What the loop did, kept beside the scratch warehouse: a kept --workdir can be scored again.
                (root / STEPS_NAME).write_text(json.dumps([r.to_json() for r in records], indent=1))
    finally:
        progress.close()
    return scratch, records


def _step(scratch: Settings, step: int, path: Path, log_path: Path) -> StepRecord:
    """Land one file (under its own name, visible only once complete) and run one cycle."""
    landing = scratch.paths.landing
    part = landing / f".{path.name}.part"
    shutil.copyfile(path, part)
    os.replace(part, landing / path.name)
    started = time.perf_counter()
    try:
        with _output_to(log_path):
            out = run_cycle(scratch)
    except CtError as e:  # the ingest run failed: recorded, and the replay goes on
        with connect_reader(scratch, wait_seconds=30) as con:
            champion = registry.champion(con)
        out = {"verdict": "failed", "champion_version": champion, "error": str(e)}
    return StepRecord.from_cycle(step, path.name, out, time.perf_counter() - started)
