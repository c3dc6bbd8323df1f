"""Contention on real parts only: the real Dagster daemon ticks the sensors at a 1 s interval while a
feeder lands deltas, so ingest and CT runs write while a "notebook" process queries the DuckDB file
read-only in a loop (the snippet of docs/reading_the_warehouse.md) and `ct-assets export` copies it to
Parquet. Then, from the Dagster instance: no failed run except gate blocks, no failed tick, one CT run
per run key and newest batch; from the warehouse: every landed file handled exactly once.

The soak variant runs with `pytest -m soak -s ct_assets_tests/robustness/load`; durations come from the
CT_ASSETS_* variables in support.py, and figures are printed (`-s` shows them) with the machine's load."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ct_assets.commands.export import export_warehouse
from ct_assets.config import Settings
from ct_assets.core.ingest import landing
from ct_assets.defs.constants import BATCH_TAG
from ct_assets.store.warehouse import init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.processes import tail
from ct_assets_tests.helpers.servers import daemon
from ct_assets_tests.robustness.load.support import (
    BAD_FILE_EVERY,
    CONTENTION_SECONDS,
    DAEMON_LOOP_SECONDS,
    EXPORT_EVERY_SECONDS,
    FAILURE,
    FEED_EVERY_SECONDS,
    FEED_ROWS,
    SOAK_CONTENTION_SECONDS,
    failure_kind,
    in_flight,
    land_bad_file,
    notebook,
    pipeline_env,
    report,
    tick_figures,
    warehouse_truth,
    write_pipeline_instance,
)


def contention(make_settings: Callable[..., Settings], project: Path, seconds: float, title: str) -> None:
    # A small, fast loop, retraining every couple of deltas; a strict point-estimate gate, so that
    # promotions and blocks both happen.
    settings = make_settings(
        **small(
            retrain={"min_new_rows": 2 * FEED_ROWS},
            gate={"rule": "point", "tolerance": 0.002},
        )
    )
    init_warehouse(settings)
    home = project / "dagster_home"
    write_pipeline_instance(home)
    env = pipeline_env(project, settings, home)
    landed: dict[str, int] = {}
    bad: list[str] = []
    exports: list[dict[str, Any]] = []
    started = time.monotonic()
    with (
        daemon(
            project, {**env, "CT_ASSETS_SENSOR_INTERVAL": "1"}, sensor_loop_seconds=DAEMON_LOOP_SECONDS
        ) as proc,
        dg.DagsterInstance.from_config(str(home)) as inst,
    ):
        # The daemon is live once the landing sensor has ticked.
        deadline = time.monotonic() + 180
        while not tick_figures(inst).get("landing_sensor"):
            assert proc.poll() is None, f"daemon exited:\n{tail(project / 'daemon.log')}"
            assert time.monotonic() < deadline, f"no sensor tick after 180 s:\n{tail(project / 'daemon.log')}"
            time.sleep(1)
        startup = time.monotonic() - started
        with notebook(settings, project) as reader:
            t0 = time.monotonic()
            next_export = t0 + EXPORT_EVERY_SECONDS
            seq = 0
            while time.monotonic() - t0 < seconds:
                assert proc.poll() is None, f"daemon exited:\n{tail(project / 'daemon.log')}"
                for path in simulate(settings, SimulationOptions(batches=1, rows=FEED_ROWS, seed=seq)):
                    landed[path.name] = FEED_ROWS
                if seq % BAD_FILE_EVERY == BAD_FILE_EVERY - 1:
                    bad.append(land_bad_file(settings, 200, seq))
                seq += 1
                if time.monotonic() >= next_export:
                    # A BI tool's copy, taken while the pipeline writes; it reads the Parquet files only.
                    exports.append(export_warehouse(settings, project / "export"))
                    next_export += EXPORT_EVERY_SECONDS
                time.sleep(FEED_EVERY_SECONDS)
            fed = time.monotonic() - t0
            # Drain: every landed file handled, no run in flight, and it stays so for a few ticks.
            deadline = time.monotonic() + 420
            quiet_since: float | None = None
            while True:
                busy = bool(landing.ready_files(settings.paths.landing)) or in_flight(inst) > 0
                now = time.monotonic()
                quiet_since = None if busy else (quiet_since or now)
                if quiet_since is not None and now - quiet_since >= 8:
                    break
                assert proc.poll() is None, f"daemon exited:\n{tail(project / 'daemon.log')}"
                assert now < deadline, (
                    f"not drained after 420 s: {len(landing.ready_files(settings.paths.landing))} files "
                    f"waiting, {in_flight(inst)} runs in flight\n{tail(project / 'daemon.log')}"
                )
                time.sleep(1)
            drained = time.monotonic() - t0 - fed
        final_export = export_warehouse(settings, project / "export")
        runs = inst.get_runs()
        kinds = {
            r.run_id: failure_kind(inst, r.run_id) for r in runs if r.status == dg.DagsterRunStatus.FAILURE
        }
        ticks = tick_figures(inst)
    truth = warehouse_truth(settings)

    by_job = Counter(f"{r.job_name}:{r.status.value}" for r in runs)
    blocks = sorted(run_id for run_id, (kind, _) in kinds.items() if kind == "block")
    failures = {run_id: text for run_id, (kind, text) in kinds.items() if kind == "failure"}
    ct_runs = [r for r in runs if r.job_name == "ct_job"]
    run_keys = Counter(r.tags.get("dagster/run_key") for r in ct_runs)
    batches = Counter(r.tags.get(BATCH_TAG) for r in ct_runs)
    tick_summary = {
        name: {k: v for k, v in counts.items() if not k.startswith(("skip:", "error:"))}
        for name, counts in ticks.items()
    }
    skip_reasons = {
        name: dict(Counter({k: v for k, v in counts.items() if k.startswith("skip:")}).most_common(4))
        for name, counts in ticks.items()
    }
    report(
        title,
        {
            "daemon start (first tick)": f"{startup:.0f} s",
            "feeding": f"{fed:.0f} s, drain {drained:.0f} s; {len(landed)} deltas of {FEED_ROWS} rows, "
            f"{len(bad)} bad files",
            "ticks by sensor": tick_summary,
            "top skip reasons": skip_reasons,
            "runs by job:status": dict(by_job),
            "blocks (gate)": len(blocks),
            "failures (other)": failures or 0,
            "CT runs": f"{len(ct_runs)}; ledger {truth['ledger']}",
            "notebook": reader,
            "exports during the run": f"{len(exports)}, warehouse held read-only at most "
            f"{max((e['warehouse_held_seconds'] for e in exports), default=0):.2f} s",
            "warehouse": f"{truth['rows']} rows in raw_deltas vs {sum(landed.values())} landed; alerts {truth['alerts']}",
        },
    )

    # No failed run except gate blocks; every block is a recorded failed validation.
    assert not failures, f"runs failed for other reasons than the gate: {failures}"
    assert not any(r.status == dg.DagsterRunStatus.CANCELED for r in runs), by_job
    assert all(truth["validations"].get(run_id) is False for run_id in blocks), (blocks, truth["validations"])
    assert "failure" not in truth["alerts"], truth["alerts"]
    # No failed tick, and the sensors really ran at the tightened interval.
    failed_ticks = {n: c for n, c in ticks.items() if c.get(FAILURE)}
    assert not failed_ticks, failed_ticks
    for name in ("landing_sensor", "retrain_sensor"):
        assert sum(tick_summary[name].values()) >= (fed + drained) / 8, (name, tick_summary[name])
    # The loop ran: ingest runs, and CT runs launched by the retrain sensor; one per run key and batch.
    assert by_job.get("ingest_job:SUCCESS", 0) >= 2, by_job
    assert ct_runs, by_job
    assert all(n == 1 for n in run_keys.values()), run_keys
    assert all(n == 1 for n in batches.values()), batches
    assert truth["validations"], "no CT run reached the gate"
    # Every landed file handled exactly once: good ones ingested, bad ones quarantined.
    statuses: dict[str, list[str]] = {}
    for name, status in truth["log"]:
        statuses.setdefault(name, []).append(status)
    assert statuses == {**{n: ["ingested"] for n in landed}, **{n: ["quarantined"] for n in bad}}
    assert truth["rows"] == truth["distinct_ids"] == sum(landed.values())
    assert sorted(p.name for p in settings.paths.archive.iterdir()) == sorted(landed)
    assert not landing.ready_files(settings.paths.landing)
    # The reader never broke a run (above) and was never refused for long: it read all along.
    assert not reader["errors"], reader["errors"][:5]
    assert reader["reads"] >= seconds, reader
    # The final export shows exactly the warehouse, read from Parquet alone.
    assert final_export["tables"]["raw_deltas"] == truth["rows"]
    assert (
        pl.scan_parquet(project / "export" / "raw_deltas.parquet").select(pl.len()).collect().item()
        == (truth["rows"])
    )


@pytest.mark.slow
def test_contention_daemon_sensors_feeder_and_a_reader(
    make_settings: Callable[..., Settings], project: Path
) -> None:
    contention(make_settings, project, CONTENTION_SECONDS, f"contention, {CONTENTION_SECONDS:.0f} s")


@pytest.mark.slow
@pytest.mark.soak
def test_contention_soak(make_settings: Callable[..., Settings], project: Path) -> None:
    contention(
        make_settings, project, SOAK_CONTENTION_SECONDS, f"contention soak, {SOAK_CONTENTION_SECONDS:.0f} s"
    )
