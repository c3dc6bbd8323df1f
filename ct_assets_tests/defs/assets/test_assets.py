"""The asset graph materialized through its jobs on a temporary DuckDB warehouse and Dagster instance."""

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from ct_assets.config import Settings
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.config import WEAK, small
from ct_assets_tests.helpers.runs import BLOCKING_CHECKS as BLOCKING
from ct_assets_tests.helpers.runs import GX_CHECKS, error_chain, materialized, metadata, records, run
from ct_assets_tests.helpers.runs import check_evaluations as check_results
from ct_assets_tests.helpers.warehouse import champion, ledger

CT_ASSETS = {"golden_dataset", "training_dataset", "challenger_model", "validation_report", "champion_model"}
CARD_FIELDS = {"params", "seed", "data_hash", "code_version", "features", "rows", "training_seconds"}


@pytest.fixture
def landed(make_settings: Callable[..., Settings]) -> Settings:
    """A warehouse with three batches of 4,000 rows waiting in the landing folder."""
    settings = make_settings(**small())
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=3, rows=4000, seed=7))
    return settings


def ingest_and_train(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    ingest = run(instance, "ingest_job")
    assert ingest.success
    assert materialized(ingest) == {"raw_deltas", "predictions", "champion_performance"}
    ct = run(instance, "ct_job")
    assert ct.success
    assert materialized(ct) == CT_ASSETS
    return ct


@pytest.mark.slow
def test_first_ct_run_promotes_a_carded_challenger(landed: Settings, instance: dg.DagsterInstance) -> None:
    ct = ingest_and_train(instance)

    checks = check_results(ct, "validation_report")
    assert {n: checks[n].passed for n in BLOCKING} == dict.fromkeys(BLOCKING, True)
    assert champion(landed) == "v0001"
    (entry,) = ledger(landed)
    assert (entry.action, entry.version, entry.champion_before, entry.champion_after, entry.verdict) == (
        "promoted",
        "v0001",
        None,
        "v0001",
        "passed",
    )
    assert metadata(ct, "champion_model")["champion_version"] == "v0001"

    # The model folder: LightGBM text plus its card, nothing else.
    models = landed.paths.models
    assert sorted(p.name for p in models.iterdir() if not p.name.startswith(".")) == ["v0001"]
    folder = models / "v0001"
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "model.txt"]
    text = (folder / "model.txt").read_text()
    assert text.startswith("tree")
    card = json.loads((folder / "card.json").read_text())
    assert set(card) >= CARD_FIELDS
    assert card["model_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert card["seed"] == card["params"]["seed"] == 42
    assert card["params"]["num_iterations"] == 30
    assert [f["name"] for f in card["features"]] == landed.feature_names
    assert card["code_version"]
    assert isinstance(card["training_seconds"], float) and card["training_seconds"] >= 0

    # The training data set's DataVersion is its content hash, and the challenger was trained on it.
    training = metadata(ct, "training_dataset")
    dataset_hash = training["dataset_hash"]
    (training_mat,) = ct.asset_materializations_for_node("training_dataset")
    assert training_mat.tags["dagster/data_version"] == dataset_hash
    latest = instance.get_latest_materialization_event(dg.AssetKey("training_dataset"))
    assert latest is not None and latest.asset_materialization is not None
    assert latest.asset_materialization.tags["dagster/data_version"] == dataset_hash
    (challenger_mat,) = ct.asset_materializations_for_node("challenger_model")
    assert challenger_mat.tags["dagster/input_data_version/training_dataset"] == dataset_hash
    challenger = metadata(ct, "challenger_model")
    assert card["data_hash"] == challenger["data_hash"] == dataset_hash
    assert card["code_version"] == challenger["code_version"]
    assert card["rows"]["train"] == training["rows_train"] == challenger["rows_train"]
    assert card["rows"]["holdout"] == training["rows_holdout"]


@pytest.mark.slow
def test_blocked_challenger_needs_a_person_and_rollback_restores_the_champion(
    landed: Settings, make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    ingest_and_train(instance)
    assert champion(landed) == "v0001"

    # A forced CT run under a much weaker configuration: the gate blocks it.
    settings = make_settings(**small(training=WEAK))
    blocked = run(instance, "ct_job")
    assert not blocked.success
    assert [f.step_key for f in blocked.get_step_failure_events()] == ["validation_report"]
    ((cls, message),) = error_chain(blocked, "validation_report")
    assert cls == "DagsterAssetCheckFailedError"
    failed = [n for n, e in check_results(blocked, "validation_report").items() if not e.passed]
    assert failed and set(failed) <= set(BLOCKING)
    assert all(name in message for name in failed)
    assert materialized(blocked) == CT_ASSETS - {"champion_model"}
    assert champion(settings) == "v0001"
    entry = ledger(settings)[0]
    assert (entry.action, entry.version, entry.champion_after) == ("blocked", "v0002", "v0001")

    # Materializing champion_model alone (default action: promote) must not sneak the challenger in.
    refused = run(instance, "registry_job")
    assert not refused.success
    assert materialized(refused) == set()
    chain = error_chain(refused, "champion_model")
    registry_errors = [m for c, m in chain if c == "RegistryError"]
    assert registry_errors, chain
    assert "refusing to promote v0002" in registry_errors[0]
    assert "blocking checks not passed" in registry_errors[0]
    assert champion(settings) == "v0001"
    assert len(ledger(settings)) == 2

    # A person approves the blocked challenger.
    reason = "label definition changed; accepted by the model owner"
    approved = run(
        instance, "registry_job", op_config={"action": "approve", "version": "v0002", "reason": reason}
    )
    assert approved.success
    assert champion(settings) == "v0002"
    entry = ledger(settings)[0]
    assert (entry.action, entry.version, entry.champion_before, entry.champion_after) == (
        "approved",
        "v0002",
        "v0001",
        "v0002",
    )
    assert entry.reason == reason
    assert metadata(approved, "champion_model")["champion_version"] == "v0002"

    # And rolls it back: the previous champion returns.
    rolled = run(instance, "registry_job", op_config={"action": "rollback", "reason": "worse in production"})
    assert rolled.success
    assert champion(settings) == "v0001"
    entry = ledger(settings)[0]
    assert (entry.action, entry.version, entry.champion_before, entry.champion_after) == (
        "rolled_back",
        "v0001",
        "v0002",
        "v0001",
    )
    assert entry.reason == "worse in production"
    assert [e.action for e in reversed(ledger(settings))] == [
        "promoted",
        "blocked",
        "approved",
        "rolled_back",
    ]


def _table(check: Any) -> list[dict[str, Any]]:
    return records(check.metadata["expectations"])


def test_bad_files_are_quarantined_beside_good_ones(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    settings = make_settings(**small())
    init_warehouse(settings)
    good = simulate(settings, SimulationOptions(batches=2, rows=3000, seed=8))
    out_of_range, no_plan = simulate(settings, SimulationOptions(batches=2, rows=3000, seed=8))
    landing = settings.paths.landing
    (
        pl.read_parquet(out_of_range)
        .with_columns(
            pl.when(pl.int_range(pl.len()) < 5)
            .then(1.5)
            .otherwise(pl.col("discount_rate"))
            .alias("discount_rate")
        )
        .write_parquet(landing / "bad_values.parquet")
    )
    pl.read_parquet(no_plan).drop("plan").write_csv(landing / "missing_plan.csv")
    (landing / "broken.parquet").write_bytes(b"PAR1 this is not a parquet file")
    out_of_range.unlink()
    no_plan.unlink()
    bad = {"bad_values.parquet", "missing_plan.csv", "broken.parquet"}

    result = run(instance, "ingest_job")
    assert result.success
    meta = metadata(result, "raw_deltas")
    assert (meta["files_ingested"], meta["files_quarantined"]) == (2, 3)
    assert meta["rows_appended"] == meta["dagster/row_count"] == 6000

    assert {p.name for p in landing.iterdir() if not p.name.startswith(".")} == set()
    assert {p.name for p in settings.paths.archive.iterdir()} == {f.name for f in good}
    quarantined = {p.name for p in settings.paths.quarantine.iterdir()}
    assert quarantined == bad | {f"{name}.reason.txt" for name in bad}
    with connect_reader(settings) as con:
        assert con.execute("SELECT count(*) FROM raw_deltas").fetchone() == (6000,)
        statuses = dict(con.execute("SELECT file_name, status FROM ingest_log").fetchall())
    assert statuses == {**{f.name: "ingested" for f in good}, **dict.fromkeys(bad, "quarantined")}

    checks = check_results(result, "raw_deltas")
    assert all(checks[n].severity == dg.AssetCheckSeverity.WARN for n in GX_CHECKS)
    assert {n: checks[n].passed for n in GX_CHECKS} == {
        "raw_deltas_schema_valid": False,
        "raw_deltas_required_not_null": True,
        "raw_deltas_values_valid": False,
        "raw_deltas_row_ids_unique": True,
    }
    schema = checks["raw_deltas_schema_valid"]
    assert schema.metadata["failed_files"].value == "broken.parquet, missing_plan.csv"
    schema_failures = {(r["file"], r["expectation"], r["column"]) for r in _table(schema) if not r["success"]}
    assert schema_failures == {
        ("broken.parquet", "file is readable", ""),
        ("missing_plan.csv", "expect_column_to_exist", "plan"),
    }
    values = checks["raw_deltas_values_valid"]
    assert values.metadata["failed_files"].value == "bad_values.parquet"
    (value_failure,) = [r for r in _table(values) if not r["success"]]
    assert (value_failure["file"], value_failure["column"], value_failure["unexpected_count"]) == (
        "bad_values.parquet",
        "discount_rate",
        5,
    )

    # An all-good ingest run afterwards: every expectation check passes.
    simulate(settings, SimulationOptions(batches=1, rows=3000, seed=8))
    clean = run(instance, "ingest_job")
    assert clean.success
    checks = check_results(clean, "raw_deltas")
    assert {n: checks[n].passed for n in GX_CHECKS} == dict.fromkeys(GX_CHECKS, True)
    assert all(r["success"] for n in GX_CHECKS for r in _table(checks[n]))
    assert metadata(clean, "raw_deltas")["dagster/row_count"] == 9000


PICKLE_MAGIC = b"\x80"


def _starts_like_a_pickle(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(2)
    # Pickle protocols 2-5 open with 0x80 and the protocol number.
    return len(head) == 2 and head[:1] == PICKLE_MAGIC and head[1] in (2, 3, 4, 5)


def test_nothing_is_pickled(landed: Settings, project: Path, instance: dg.DagsterInstance) -> None:
    ingest_and_train(instance)

    # Dagster's default IO manager would have pickled each step output to <DAGSTER_HOME>/storage/<run>/<asset>.
    storage = Path(os.environ["DAGSTER_HOME"]) / "storage"
    stored = [p for p in storage.rglob("*") if p.is_file()]
    assert [p for p in stored if p.read_bytes()[:1] == PICKLE_MAGIC] == []
    assert [p for p in storage.rglob("*") if p.name in CT_ASSETS | {"raw_deltas"}] == []

    # In the project only DuckDB files open with arbitrary bytes (a block checksum); nothing else pickles.
    files = [p for p in project.rglob("*") if p.is_file()]
    assert [p for p in files if p.suffix in (".pkl", ".pickle")] == []
    assert [p for p in files if not p.name.endswith((".duckdb", ".wal")) and _starts_like_a_pickle(p)] == []

    # What travels along the graph's edges is JSON under the state folder.
    handoff = landed.paths.state / "handoff"
    assert {p.name for p in handoff.iterdir()} == {f"{a}.json" for a in CT_ASSETS | {"raw_deltas"}}
    for path in handoff.iterdir():
        doc = json.loads(path.read_text())
        assert set(doc) == {"run_id", "value"}
    challenger = json.loads((handoff / "challenger_model.json").read_text())["value"]
    assert challenger["version"] == "v0001"


@pytest.mark.slow
def test_the_challenger_step_executed_again_in_its_run_trains_nothing_new(
    landed: Settings, instance: dg.DagsterInstance
) -> None:
    """Dask re-runs a finished step whose result was on a lost worker: the step must not register a
    second version for the same run."""
    from ct_assets.core import registry
    from ct_assets.core.datasets.training import load_dataset
    from ct_assets.core.modeling.challenger import train_challenger

    ct = ingest_and_train(instance)
    with connect_reader(landed) as con:
        ds = load_dataset(con, metadata(ct, "training_dataset")["dataset_hash"])
    again = train_challenger(landed, ds, run_id=ct.run_id, budget_seconds=60, budget_source="test")
    card = json.loads((landed.paths.models / "v0001" / "card.json").read_text())
    assert again.version == "v0001" and again.card == card and not again.reused
    assert sorted(p.name for p in landed.paths.models.iterdir() if not p.name.startswith(".")) == ["v0001"]
    with connect_reader(landed) as con:
        assert [m.version for m in registry.models(con)] == ["v0001"]
    other = train_challenger(landed, ds, run_id="another-run", budget_seconds=60, budget_source="test")
    assert other.version == "v0002"
