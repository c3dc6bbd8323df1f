"""The golden set's guarantees (an explicit, recorded rebuild; never trained on) and human review from
the command line (the champion at a past time, a rollback that scores its target on the golden set)."""

import json
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ct_assets.commands.cycle import run_cycle
from ct_assets.commands.status import status
from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.datasets import overlap, training
from ct_assets.core.datasets.golden import active_golden, read_golden
from ct_assets.core.datasets.training import load_dataset, read_split
from ct_assets.core.modeling.metrics import all_metrics
from ct_assets.core.modeling.model import labels, load_version
from ct_assets.store.schema import SCHEMA_VERSION, raw_delta_columns
from ct_assets.store.warehouse import connect_reader, connect_writer, init_warehouse, transaction
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.cli import cli, error_line, ok, one_json
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.runs import check, materialized, run
from ct_assets_tests.helpers.warehouse import ledger

EXCLUDES_GOLDEN = "training_dataset_excludes_golden"


@pytest.fixture
def promoted(make_settings: Callable[..., Settings], instance: dg.DagsterInstance) -> Settings:
    """Three batches ingested and a first champion (v0001), its golden set built on the way."""
    settings = make_settings(**small(dataset={"golden_fraction": 0.2}))
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=3, rows=3000, seed=1))
    assert run(instance, "ingest_job").success
    first = run(instance, "ct_job")
    assert first.success
    assert check(first, EXCLUDES_GOLDEN).passed
    return settings


# --------------------------------------------------------------------------------------------- golden


@pytest.mark.slow
def test_golden_rebuild_from_the_command_line_is_recorded_in_the_ledger(
    promoted: Settings, project: Path, instance: dg.DagsterInstance, make_settings: Callable[..., Settings]
) -> None:
    make_settings(**small(dataset={"golden_fraction": 0.2, "golden_refresh": 0.0}))  # a frozen golden set
    with connect_reader(promoted) as con:
        old = active_golden(con)
        old_rows = read_golden(con, promoted, old.golden_hash) if old else None
    assert old is not None and old_rows is not None
    assert [e.action for e in ledger(promoted)] == ["promoted"]  # the first build is not a rebuild

    # More data arrives: the golden set stays frozen through a CT run...
    simulate(promoted, SimulationOptions(batches=2, rows=3000, seed=2))
    assert run(instance, "ingest_job").success
    frozen = run(instance, "ct_job")
    (golden_mat,) = frozen.asset_materializations_for_node("golden_dataset")
    assert golden_mat.metadata["golden_hash"].value == old.golden_hash

    with connect_reader(promoted) as con:
        champion = registry.champion(con)

    # ...until someone rebuilds it, with a reason.
    reason = "regions were re-drawn in March"
    out = ok(cli(project, "golden", "rebuild", "--reason", reason)).stdout
    with connect_reader(promoted) as con:
        new = active_golden(con)
        assert new is not None
        assert read_golden(con, promoted, old.golden_hash).equals(old_rows, null_equal=True)  # kept
        builds = con.execute("SELECT golden_hash, reason FROM golden_versions ORDER BY build_id").fetchall()
    assert new.golden_hash != old.golden_hash
    assert out.strip().startswith(f"golden set {old.golden_hash} -> {new.golden_hash} ({new.rows} rows; run ")
    assert builds[0][0] == old.golden_hash and builds[-1] == (new.golden_hash, reason)

    entry = ledger(promoted)[0]
    assert entry.action == "golden_rebuilt"
    assert entry.metrics["old_golden_hash"] == old.golden_hash
    assert entry.metrics["new_golden_hash"] == new.golden_hash
    assert entry.metrics["previous"] == old.golden_hash and entry.metrics["rows_added"] > 0
    assert entry.reason == reason
    assert entry.actor == registry.actor()
    assert entry.data_hash == new.golden_hash
    assert entry.version is None
    assert entry.champion_before == entry.champion_after == champion  # the champion does not change
    with connect_reader(promoted) as con:
        assert registry.last_verdict(con).action != "golden_rebuilt"  # type: ignore[union-attr]

    # The next validation compares on the new golden set.
    after = run(instance, "ct_job")
    (report,) = after.asset_materializations_for_node("validation_report")
    assert report.metadata["golden_hash"].value == new.golden_hash


def test_golden_rebuild_needs_a_reason(promoted: Settings, project: Path) -> None:
    line = error_line(cli(project, "golden", "rebuild", "--reason", "  "))
    assert "reason" in line
    missing = cli(project, "golden", "rebuild")
    assert missing.returncode != 0 and "--reason" in missing.stderr
    assert [e.action for e in ledger(promoted)] == ["promoted"]
    with connect_reader(promoted) as con:
        assert con.execute("SELECT count(*) FROM golden_versions").fetchall() == [(1,)]


def reland_golden_rows(settings: Settings, instance: dg.DagsterInstance, rows: int = 25) -> int:
    """Land `rows` rows of the active golden set again under new ids (what real data does: distinct
    rows that agree on every configured column); returns the largest id before them."""
    with connect_reader(settings) as con:
        golden = active_golden(con)
        assert golden is not None
        frame = read_golden(con, settings, golden.golden_hash).head(rows)
        (max_id,) = con.execute("SELECT max(row_id) FROM raw_deltas").fetchone()
    columns = [n for n, _ in raw_delta_columns(settings)]
    again = frame.with_columns(
        pl.int_range(max_id + 1, max_id + 1 + frame.height, dtype=pl.Int64).alias("row_id")
    )
    again.select(columns).write_parquet(settings.paths.landing / "relanded.parquet")
    assert run(instance, "ingest_job").success
    with connect_reader(settings) as con:
        assert con.execute("SELECT count(*) FROM raw_deltas WHERE row_id > ?", [max_id]).fetchall() == [
            (rows,)
        ]
    return int(max_id)


def not_in_reserve(settings: Settings, max_id: int) -> int:
    with connect_reader(settings) as con:
        (n,) = con.execute(
            "SELECT count(*) FROM raw_deltas WHERE row_id > ? AND NOT _reserve", [max_id]
        ).fetchone()
    return int(n)


def test_a_golden_row_landed_again_under_a_new_id_is_left_out_of_training(
    promoted: Settings, instance: dg.DagsterInstance
) -> None:
    """Rows equal in content (event time and features) to a reserve row under another id are left out of
    the training selection and counted; the check on the materialized rows finds no golden row, and the
    CT run trains and decides."""
    max_id = reland_golden_rows(promoted, instance)
    result = run(instance, "ct_job")
    assert "challenger_model" in materialized(result)
    leak = check(result, EXCLUDES_GOLDEN)
    assert leak.passed, leak.description
    assert (leak.metadata["overlap_by_key"].value, leak.metadata["overlap_by_content"].value) == (0, 0)
    (ds,) = result.asset_materializations_for_node("training_dataset")
    outside = not_in_reserve(promoted, max_id)  # the re-landed rows whose new id fell outside the reserve
    assert outside > 0
    assert ds.metadata["rows_left_out_same_content_as_reserve"].value >= outside
    assert ds.metadata["rows_left_out_golden_reserve"].value > 0
    with connect_reader(promoted) as con:
        info = load_dataset(con, ds.metadata["dataset_hash"].value)
        ids = pl.concat([read_split(con, promoted, info, part) for part in ("train", "holdout")])["row_id"]
    assert int((ids > max_id).sum()) == 0


def test_the_leak_check_stops_a_wrong_selection_and_cycle_says_which_check_and_why(
    promoted: Settings, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check verifies the materialized rows, not the selection's intent: a selection that forgets the
    content rule lets the re-landed golden rows in; the check fails with severity ERROR, the run stops
    before training, and `cycle --json` names the check with its reason (its error line says why)."""
    max_id = reland_golden_rows(promoted, instance)
    right = training.selection_sql

    def without_content_rule(*args: Any, **kwargs: Any) -> str:
        return re.sub(
            r"ANTI JOIN \(.*?\) r ON d\._content_hash = r\._content_hash ", "", right(*args, **kwargs)
        )

    monkeypatch.setattr(training, "selection_sql", without_content_rule)
    monkeypatch.setattr(overlap, "selection_sql", without_content_rule)
    out = run_cycle(promoted, force=True)

    assert out["verdict"] == "failed"
    assert out["failed_checks"] == [EXCLUDES_GOLDEN]
    reason = out["failed_reasons"][EXCLUDES_GOLDEN]
    assert f"{not_in_reserve(promoted, max_id)} by content" in reason
    examples = reason.split("(e.g. ids ", 1)[1].rstrip(")").split(", ")
    assert examples and all(max_id < int(x) <= max_id + 25 for x in examples)  # the re-landed rows
    assert out["error"].startswith(f"blocking check {EXCLUDES_GOLDEN} failed: ")
    assert out["challenger_version"] is None
    with connect_reader(promoted) as con:
        assert registry.model_versions(con) == ["v0001"]
        assert registry.champion(con) == "v0001"


# The two tables as the previous release (warehouse schema 1, commit 52ad69f) created them.
SCHEMA_1 = [
    """CREATE TABLE golden_versions (
        golden_hash VARCHAR PRIMARY KEY, created_at TIMESTAMP NOT NULL, rows BIGINT,
        max_batch_id BIGINT, slice_counts VARCHAR, reason VARCHAR, run_id VARCHAR)""",
    """CREATE TABLE alerts (
        alert_id BIGINT PRIMARY KEY, raised_at TIMESTAMP NOT NULL, kind VARCHAR NOT NULL,
        cause VARCHAR NOT NULL, message VARCHAR NOT NULL, details VARCHAR, delivered VARCHAR)""",
]


def test_init_upgrades_a_warehouse_of_the_previous_schema(warehouse: Settings) -> None:
    """`ct-assets init` is "create or upgrade": a warehouse made by the previous release, whose
    golden_versions is keyed by hash (no build_id), keeps its frozen golden set readable after init."""
    with connect_writer(warehouse) as con, transaction(con):
        con.execute("DROP TABLE golden_versions")
        con.execute("DROP TABLE alerts")
        con.execute("DROP TABLE champion_scores")  # schema 3
        con.execute("DROP TABLE predictions")  # schema 5
        for ddl in SCHEMA_1:
            con.execute(ddl)
        con.execute(
            "INSERT INTO golden_versions VALUES ('0123456789abcdef', TIMESTAMP '2026-01-01 00:00:00', 100, 3, "
            "'{}', 'first build', 'run-1')"
        )
        con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")

    init_warehouse(warehouse)  # the upgrade

    with connect_reader(warehouse) as con:
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [
            (str(SCHEMA_VERSION),)
        ]
        assert SCHEMA_VERSION == 5
        assert con.execute("SELECT count(*) FROM champion_scores").fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM predictions").fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM batch_decisions").fetchall() == [(0,)]
        golden = active_golden(con)  # fails today: Binder Error, column "build_id" not found
    assert golden is not None and golden.golden_hash == "0123456789abcdef"
    assert status(warehouse)["golden_hash"] == "0123456789abcdef"  # what `ct-assets status` shows


# ----------------------------------------------------------------------------------------- the ledger


def listing(project: Path, *args: str) -> dict[str, Any]:
    return one_json(ok(cli(project, "registry", "list", "--json", *args)))


@pytest.mark.slow
def test_champion_at_a_past_time_and_a_rollback_scored_on_the_golden_set(
    make_settings: Callable[..., Settings], project: Path, instance: dg.DagsterInstance
) -> None:
    settings = make_settings(**small(dataset={"golden_fraction": 0.2}))
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=3, rows=3000, seed=1))
    assert run(instance, "ingest_job").success
    before_any = datetime.utcnow().isoformat(timespec="microseconds")
    assert run(instance, "ct_job").success  # v0001
    between = datetime.utcnow().isoformat(timespec="microseconds")
    # v0002: the same data, another seed (the same seed would be the champion's exact copy: not trained
    # again); seed 2 is within the tolerances here, so it is promoted too.
    make_settings(**small(dataset={"golden_fraction": 0.2}, training={"seed": 2}))
    assert run(instance, "ct_job").success
    assert [e.action for e in ledger(settings)] == ["promoted", "promoted"]

    past = listing(project, "--at", before_any)
    assert (past["champion_at"], past["champion_version"]) == (None, "v0002")
    assert listing(project, "--at", between)["champion_at"] == "v0001"
    now = listing(project, "--at", datetime.utcnow().isoformat())
    assert now["champion_at"] == now["champion_version"] == "v0002"
    assert "not an ISO 8601 time" in error_line(cli(project, "registry", "list", "--at", "yesterday-ish"))

    # Rollback (back to v0001): the target is loaded and scored on the golden set before the re-pointing.
    rolled = run(
        instance, "registry_job", op_config={"action": "rollback", "reason": "latency in production"}
    )
    assert rolled.success
    entry = ledger(settings)[0]
    assert (entry.action, entry.version, entry.champion_before, entry.champion_after, entry.verdict) == (
        "rolled_back",
        "v0001",
        "v0002",
        "v0001",
        "rollback",
    )
    assert entry.reason == "latency in production"
    assert entry.actor == registry.actor()
    with connect_reader(settings) as con:
        golden = active_golden(con)
        assert golden is not None
        frame = read_golden(con, settings, golden.golden_hash)
    expected = all_metrics(
        labels(frame, settings), load_version(settings.paths.models, "v0001").predict(frame), 0.5
    )
    assert entry.metrics["golden_hash"] == golden.golden_hash
    assert set(entry.metrics) == {"golden_hash", "golden_rows_scored", *(f"golden_{k}" for k in expected)}
    assert entry.metrics["golden_rows_scored"] == frame.height
    for name, value in expected.items():
        assert entry.metrics[f"golden_{name}"] == pytest.approx(value, abs=1e-6), name
    report = json.loads((settings.paths.reports / "v0001.json").read_text())
    assert entry.metrics["golden_roc_auc"] == pytest.approx(
        report["metrics"]["golden"]["challenger"]["roc_auc"], abs=1e-6
    )

    # A target that cannot be loaded is refused before anything changes.
    model = settings.paths.models / "v0002" / "model.txt"
    model.write_text(model.read_text() + "\n")
    refused = error_line(cli(project, "registry", "rollback", "--to", "v0002", "--reason", "try"))
    assert "v0002" in refused
    assert ledger(settings)[0].entry_id == entry.entry_id
    with connect_reader(settings) as con:
        assert registry.champion(con) == "v0001"
