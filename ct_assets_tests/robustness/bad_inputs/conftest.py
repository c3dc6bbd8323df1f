"""The bad-input scenario, built once for this folder: Great Expectations costs about a second per
validated file, so one landing folder holding every kind of file is ingested once (round 1), then a
second round lands the next good file, rows whose ids were already ingested, and bytes seen before;
each test asserts on that outcome."""

import os
import shutil
from datetime import timedelta

import polars as pl
import pytest

from ct_assets.config import load_settings
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.core.ingest.landing import display_name
from ct_assets.store.warehouse import init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.robustness.bad_inputs.cases import CASE_ROWS, CASES, Scenario, case_first_id, land_order
from ct_assets_tests.robustness.bad_inputs.makers import CHUNK_ROWS, LARGE_ROWS, NOW, delta


@pytest.fixture(scope="package")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    root = tmp_path_factory.mktemp("bad_inputs")
    config = root / "ct.toml"
    config.write_text(
        f"[retrain]\nmin_new_rows = 1000\n\n[ingest]\nchunk_rows = {CHUNK_ROWS}\n", encoding="utf-8"
    )
    settings = load_settings(config, cwd=root)
    init_warehouse(settings)
    landing = settings.paths.landing
    expected: dict[str, pl.DataFrame] = {}

    # Good files, written by the simulator: a Parquet file, a CSV file and a large Parquet file.
    good = simulate(settings, SimulationOptions(batches=1, rows=300, seed=1), now=NOW - timedelta(hours=3))
    good += simulate(settings, SimulationOptions(batches=1, rows=300, seed=2, file_format="csv"), now=NOW)
    good += simulate(settings, SimulationOptions(batches=1, rows=LARGE_ROWS, seed=3), now=NOW)
    for path in good:
        frame = (
            pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, try_parse_dates=True)
        )
        expected[path.name] = frame.with_columns(pl.col("event_time").cast(pl.Datetime("us")))
    order = [p.name for p in good]
    shutil.copyfile(good[0], landing / "same bytes, new name.parquet")  # a duplicate in the same run
    order.append("same bytes, new name.parquet")

    for i, case in enumerate(CASES):
        rows = case.make(delta(case_first_id(i), CASE_ROWS, seed=100 + i), landing / case.file)
        if rows is not None:
            expected[case.logged] = rows
        order.append(case.file)

    # A symlink with a ready name (to a good file outside the landing folder) and a dangling one.
    outside = root / "outside"
    outside.mkdir()
    link_target = outside / "target.parquet"
    delta(90_000_000, 50, seed=9).write_parquet(link_target)
    (landing / "link.parquet").symlink_to(link_target)
    (landing / "dangling.csv").symlink_to(outside / "missing.csv")
    order += ["link.parquet", "dangling.csv"]
    land_order(landing, order)

    # Left alone: files still being written, a directory with a ready name, a subfolder, a FIFO.
    not_ready: dict[str, bytes] = {}
    for name in (".hidden.parquet", "in_progress.parquet.part", "in_progress.csv.tmp", "notes.txt"):
        delta(91_000_000, 20, seed=10).write_parquet(landing / name)
        not_ready[name] = (landing / name).read_bytes()
    (landing / "folder.parquet").mkdir()
    delta(92_000_000, 20, seed=11).write_parquet(landing / "folder.parquet" / "inner.parquet")
    (landing / "sub").mkdir()
    delta(93_000_000, 20, seed=12).write_csv(landing / "sub" / "nested.csv")
    os.mkfifo(landing / "pipe.csv")

    round1 = ingest_landed_files(settings, run_id="round-1", now=NOW)

    # Round 2: the next good file, rows whose ids are already in, the same bytes again, and the bytes
    # of a quarantined file again.
    next_good = simulate(settings, SimulationOptions(batches=1, rows=300, seed=4), now=NOW)[0]
    expected[next_good.name] = pl.read_parquet(next_good)
    first = expected[good[0].name]
    overlap = pl.concat([first.tail(100), delta(94_000_000, 100, seed=13).select(first.columns)])
    overlap.write_parquet(landing / "overlap.parquet")
    expected["overlap.parquet"] = overlap.tail(100)
    shutil.copyfile(settings.paths.archive / good[1].name, landing / "again.csv")
    shutil.copyfile(settings.paths.quarantine / "truncated.parquet", landing / "truncated again.parquet")
    order2 = [next_good.name, "overlap.parquet", "again.csv", "truncated again.parquet"]
    land_order(landing, order2)
    round2 = ingest_landed_files(settings, run_id="round-2", now=NOW + timedelta(minutes=5))

    return Scenario(
        settings=settings,
        round1=round1,
        round2=round2,
        expected=expected,
        logged1=[display_name(n) for n in order],
        logged2=order2,
        good1=[p.name for p in good],
        next_good=next_good.name,
        link_target=link_target,
        not_ready=not_ready,
        quarantined_copy="truncated again.parquet",
    )
