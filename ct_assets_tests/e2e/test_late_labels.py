"""End to end through the console script (issue 13, point 1): rows landed without labels, then the same
rows sent again with their labels and a label file; labels attach, count toward rows_since_training and
trigger retraining; a model trained before them still reproduces byte for byte; simulate --label-delay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest

from ct_assets.tools.simulator import SimulationOptions, generate_rows
from ct_assets_tests.helpers.cli import cli, ok, one_json
from ct_assets_tests.helpers.config import small, write_config

pytestmark = pytest.mark.slow

ROWS, SEED = 4000, 3


def run_json(project: Path, config: Path, *args: str) -> dict[str, Any]:
    return one_json(ok(cli(project, *args, "--json", config=config, timeout=300)))


def true_labels() -> np.ndarray:
    """The labels of the stream's first batch as the simulator draws them (before any is withheld)."""
    rng = np.random.default_rng([SEED, 1])
    return generate_rows(rng, ROWS, SimulationOptions(batches=1, rows=ROWS, seed=SEED), batch=1)["label"]


def query(project: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(project / "data" / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_late_labels_attach_trigger_retraining_and_leave_older_models_reproducible(project: Path) -> None:
    config = write_config(project / "ct.toml", small())
    ok(cli(project, "init", config=config))
    (delta,) = ok(
        cli(
            project,
            "simulate",
            "--batches",
            "1",
            "--rows",
            str(ROWS),
            "--seed",
            str(SEED),
            "--unlabelled",
            "0.5",
            config=config,
        )
    ).stdout.split()
    landed = pl.read_parquet(delta)
    unlabelled = landed.filter(pl.col("label").is_null())
    labelled = ROWS - unlabelled.height
    first = run_json(project, config, "cycle")
    assert (first["verdict"], first["champion_version"], first["labels_attached"]) == ("promoted", "v0001", 0)
    before = run_json(project, config, "status")
    assert (before["rows_total"], before["rows_labelled"], before["rows_since_training"]) == (
        ROWS,
        labelled,
        0,
    )

    # The rows without a label, sent again with it (form a).
    resend = landed.with_columns(pl.Series("label", true_labels())).filter(
        pl.col("row_id").is_in(unlabelled["row_id"].implode())
    )
    resend.write_parquet(project / "data" / "landing" / "resend.parquet")
    second = run_json(project, config, "cycle")
    assert (second["ingested_files"], second["labels_attached"], second["labels_conflict"]) == (
        1,
        unlabelled.height,
        0,
    )
    assert second["trigger"]["rows_since_training"] == unlabelled.height
    assert second["trigger"]["trigger"] == "rows" and second["challenger_version"] == "v0002"
    assert second["verdict"] in ("promoted", "blocked")
    assert query(
        project,
        "SELECT rows, rows_duplicate, labels_attached FROM ingest_log WHERE file_name = 'resend.parquet'",
    ) == [(0, unlabelled.height, unlabelled.height)]
    after = run_json(project, config, "status")
    assert (after["rows_total"], after["rows_labelled"], after["labels_attached"]) == (
        ROWS,
        ROWS,
        unlabelled.height,
    )
    assert after["labels"]["delay_hours"]["median"] > 0
    late = query(project, "SELECT rows_late_labelled FROM dataset_versions ORDER BY created_at")
    assert late[0] == (0,) and late[-1][0] > 0.8 * unlabelled.height  # all but the golden reserve's

    # A label file (form b): a conflict (relabelling is refused and alerted) and an id never seen (pending).
    ids = resend["row_id"].head(2).to_list()
    labels = pl.DataFrame({"row_id": [ids[0], 10**9], "label": [1 - int(resend["label"][0]), 1]})
    labels.write_csv(project / "data" / "landing" / "labels.csv")
    third = run_json(project, config, "cycle")
    assert (third["labels_attached"], third["labels_conflict"], third["labels_pending"]) == (0, 1, 1)
    late_status = run_json(project, config, "status")
    assert (late_status["labels"]["conflict"], late_status["labels"]["pending"]) == (1, 1)
    assert any(
        a["kind"] == "data" and "the first label stays" in a["message"] for a in late_status["open_alerts"]
    )
    text = ok(cli(project, "status", config=config)).stdout
    assert f"late labels: {unlabelled.height} attached, 1 pending" in text

    # Models trained before the labels arrived still reproduce byte for byte; so does the newer one.
    for version in ("v0001", "v0002"):
        out = ok(cli(project, "reproduce", version, config=config, timeout=300)).stdout
        assert out.startswith(f"{version}: reproducible: byte-identical model.txt"), out


def test_simulate_label_delay_feeds_the_loop(project: Path) -> None:
    config = write_config(project / "ct.toml", small())
    ok(cli(project, "init", config=config))
    paths = ok(
        cli(
            project,
            "simulate",
            "--batches",
            "3",
            "--rows",
            "1500",
            "--seed",
            "1",
            "--label-delay",
            "1",
            config=config,
        )
    ).stdout.split()
    assert [Path(p).name.split("_")[0] for p in paths] == ["delta", "delta", "labels", "delta", "labels"]
    out = run_json(project, config, "cycle")
    assert out["ingested_files"] == 5
    assert out["labels_attached"] > 0.9 * 2 * 1500
    assert out["trigger"]["rows_since_training"] == out["labels_attached"]
    assert out["verdict"] == "promoted"
