"""End to end through the console script: the champion's predictions of every landed row (those that
landed before it included), a blocked challenger's shadow scores and its report section, `ct-assets
predict` with its one-line errors, and `ct-assets export` with the predictions table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from ct_assets_tests.helpers.cli import cli, error_line, ok, one_json
from ct_assets_tests.helpers.config import WEAK, small, write_config

pytestmark = pytest.mark.slow

CYCLE_TIMEOUT = 300


def query(project: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(project / "data" / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def cycle(project: Path, config: Path, *args: str) -> dict[str, Any]:
    return one_json(ok(cli(project, "cycle", "--json", *args, config=config, timeout=CYCLE_TIMEOUT)))


def test_predictions_shadow_predict_and_export_through_the_cli(project: Path) -> None:
    config = write_config(project / "ct.toml", small())
    ingest_only = write_config(
        project / "ingest_only.toml",
        small(retrain={"min_new_rows": 10**9, "decay_margin": 1.0, "max_champion_age_hours": 0}),
    )
    weak = write_config(project / "weak.toml", small(training=WEAK))
    ok(cli(project, "init", config=config))
    ok(cli(project, "simulate", "--batches", "3", "--rows", "2000", "--seed", "1", config=config))
    first = cycle(project, config)
    assert (first["verdict"], first["champion_version"]) == ("promoted", "v0001")
    # The ingest run came before any champion: its rows wait.
    assert query(project, "SELECT count(*) FROM predictions") == [(0,)]

    ok(cli(project, "simulate", "--batches", "1", "--rows", "1500", "--seed", "2", config=config))
    assert cycle(project, ingest_only)["verdict"] == "not_triggered"
    assert query(
        project, "SELECT role, model_version, count(*), count(DISTINCT row_id) FROM predictions GROUP BY ALL"
    ) == [("champion", "v0001", 7500, 7500)]

    # A much weaker challenger is blocked; while it waits for review it shadow-scores the rows that land.
    blocked = cycle(project, weak, "--force")
    assert (blocked["verdict"], blocked["challenger_version"]) == ("blocked", "v0002")
    ok(cli(project, "simulate", "--batches", "1", "--rows", "1500", "--seed", "3", config=config))
    cycle(project, ingest_only)
    assert query(
        project,
        "SELECT role, model_version, min(_batch_id), count(*) FROM predictions GROUP BY ALL ORDER BY 1",
    ) == [
        ("champion", "v0001", 1, 9000),
        ("shadow", "v0002", 5, 1500),
    ]
    report = Path(ok(cli(project, "report", "v0002", config=config)).stdout.strip())
    page = report.read_text()
    assert "Shadow evaluation on live rows" in page and "None yet" not in page
    shadow = json.loads(report.with_suffix(".json").read_text())["shadow"]
    assert shadow["rows"] == 1500 and shadow["champion_versions"] == ["v0001"]
    assert 1400 < shadow["rows_labelled"] < 1500
    assert shadow["challenger_metric"] < shadow["champion_metric"]  # two leaves against a real model
    assert f"{shadow['champion_metric']:.4f}" in page and f"{shadow['decision_flips']:.2%}" in page

    # ct-assets predict: a file without labels, scored by the champion beside itself, or by a version.
    archived = sorted((project / "data" / "archive").glob("*.parquet"))[-1]
    rows = pl.read_parquet(archived).drop("label")
    rows.write_parquet(project / "new.parquet")
    done = ok(cli(project, "predict", "new.parquet", config=config))
    assert done.stdout.startswith("wrote new.predictions.parquet: 1500 rows scored by champion v0001")
    out = pl.read_parquet(project / "new.predictions.parquet")
    assert out.columns == ["row_id", "score", "decision", "model_version"]
    assert out["row_id"].to_list() == rows["row_id"].to_list()
    served = dict(
        query(project, "SELECT row_id, score FROM predictions WHERE role = 'champion' AND _batch_id = 5")
    )
    assert out["score"].to_list() == pytest.approx([served[i] for i in out["row_id"]], abs=1e-12)
    ok(
        cli(
            project,
            "predict",
            "new.parquet",
            "--out",
            "scored/by_v2.parquet",
            "--version",
            "v0002",
            config=config,
        )
    )
    assert set(pl.read_parquet(project / "scored" / "by_v2.parquet")["model_version"]) == {"v0002"}

    rows.with_columns(pl.lit(-3.0).alias("monthly_spend")).write_csv(project / "bad.csv")
    errors = {
        "missing": error_line(cli(project, "predict", "nowhere.parquet", config=config)),
        "invalid": error_line(cli(project, "predict", "bad.csv", config=config)),
        "unknown": error_line(cli(project, "predict", "new.parquet", "--version", "v0099", config=config)),
        "not a version": error_line(
            cli(project, "predict", "new.parquet", "--version", "../v0001", config=config)
        ),
    }
    assert errors["missing"] == "ct-assets: error: nowhere.parquet: no such file"
    assert errors["invalid"].startswith(
        "ct-assets: error: bad.csv: column 'monthly_spend' fails expect_column_values_to_be_between (1500 of 1500 rows"
    )
    assert errors["unknown"].startswith("ct-assets: error: no model v0099 in ")
    assert (
        errors["not a version"]
        == "ct-assets: error: '../v0001' is not a model version (expected v0001, v0002, ...)"
    )
    assert not (project / "bad.predictions.parquet").exists()

    # ct-assets export: the predictions table beside the others.
    manifest = one_json(ok(cli(project, "export", "--json", config=config)))
    assert manifest["tables"]["predictions"] == 10_500
    copy = pl.read_parquet(project / "data" / "export" / "predictions.parquet")
    assert copy.height == 10_500 and set(copy["role"]) == {"champion", "shadow"}

    # No champion yet: predict says so (a fresh project beside this one).
    fresh = project / "fresh"
    fresh.mkdir()
    ok(cli(project, "init", cwd=fresh, config=config))
    no_champion = error_line(cli(project, "predict", str(project / "new.parquet"), cwd=fresh, config=config))
    assert no_champion == (
        "ct-assets: error: no champion yet to score with: run `ct-assets cycle` first, or pass --version V"
    )
