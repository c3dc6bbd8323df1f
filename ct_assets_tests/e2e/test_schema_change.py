"""End to end through the console script (issue 13, point 2): an optional feature added to the config
after data exists, a required one, a kind change and a renamed label refused in one line before any
run, models of both feature sets compared on rows both can score, a rollback across feature sets,
reproduce of a model trained before the change, and the feature removed again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from ct_assets_tests.helpers.cli import cli, error_line, ok, one_json
from ct_assets_tests.helpers.config import default_tables, small, write_config

pytestmark = pytest.mark.slow

TENURE_YEARS = {"kind": "numeric", "min": 0, "max": 60}


def config(project: Path, name: str, **features: Any) -> Path:
    """The small configuration, with the default [features] changed (a value None removes one)."""
    feats = dict(default_tables()["features"])
    for f, spec in features.items():
        if spec is None:
            feats.pop(f)
        else:
            feats[f] = spec
    # CT runs only when forced: the test says when a model is trained.
    tables: dict[str, Any] = small(dataset={"golden_fraction": 0.2}, retrain={"min_new_rows": 10**6})
    tables["features"] = feats
    return write_config(project / name, tables)


def cycle(project: Path, cfg: Path, *args: str) -> dict[str, Any]:
    return one_json(ok(cli(project, "cycle", "--json", *args, config=cfg, timeout=300)))


def simulate(project: Path, cfg: Path, batches: int, seed: int, *, years: bool) -> None:
    """Land simulated batches (written under the default schema), with tenure_years added when asked."""
    paths = ok(
        cli(project, "simulate", "--batches", str(batches), "--rows", "3000", "--seed", str(seed), config=cfg)
    )
    for path in paths.stdout.split():
        if years:
            frame = pl.read_parquet(path)
            frame.with_columns((pl.col("tenure_months") / 12).round(2).alias("tenure_years")).write_parquet(
                path
            )


def columns(project: Path) -> list[str]:
    con = duckdb.connect(str(project / "data" / "warehouse.duckdb"), read_only=True)
    try:
        return [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'raw_deltas'"
            ).fetchall()
        ]
    finally:
        con.close()


def test_a_feature_added_after_data_exists(project: Path) -> None:
    before = config(project, "before.toml")
    ok(cli(project, "init", config=before))
    simulate(project, before, 3, seed=1, years=False)
    assert cycle(project, before, "--force")["champion_version"] == "v0001"

    refused = {
        "required.toml": (
            {"tenure_years": {**TENURE_YEARS, "required": True}},
            "new required feature 'tenure_years'",
        ),
        "kind.toml": (
            {"plan": {"kind": "numeric"}},
            "feature 'plan' is numeric in the config but categorical",
        ),
    }
    for name, (change, words) in refused.items():
        line = error_line(cli(project, "cycle", "--json", config=config(project, name, **change)))
        assert words in line and "point [paths] warehouse at a new file" in line
    renamed = write_config(project / "renamed.toml", {**small(), "columns": {"label": "churned"}})
    assert "a label column cannot be renamed" in error_line(cli(project, "cycle", config=renamed))
    assert "tenure_years" not in columns(project)

    added = config(project, "added.toml", tenure_years=TENURE_YEARS)
    simulate(project, before, 2, seed=2, years=True)
    out = cycle(project, added, "--force")
    assert out["ingested_files"] == 2 and out["challenger_version"] == "v0002"
    assert "tenure_years" in columns(project)
    report = json.loads((project / "data" / "reports" / "v0002.json").read_text())
    assert report["features_only_one_model_uses"] == "tenure_years"
    assert "landed without tenure_years" in report["golden_compared"]
    if out["verdict"] == "blocked":
        ok(cli(project, "registry", "approve", "v0002", "--reason", "new feature", config=added))
    card = json.loads((project / "data" / "models" / "v0002" / "card.json").read_text())
    assert "tenure_years" in [f["name"] for f in card["features"]]

    # Back to the model without the feature, and it keeps scoring the rows that land.
    ok(
        cli(
            project,
            "registry",
            "rollback",
            "--to",
            "v0001",
            "--reason",
            "back to the old features",
            config=added,
        )
    )
    simulate(project, before, 1, seed=3, years=True)
    assert cycle(project, added)["champion_version"] == "v0001"
    status = one_json(ok(cli(project, "status", "--json", config=added)))
    assert status["champion_version"] == "v0001" and "not scored" not in status["triggers"]["decay"]
    for version in ("v0001", "v0002"):
        line = ok(cli(project, "reproduce", version, config=added, timeout=300)).stdout
        assert line.startswith(f"{version}: reproducible: byte-identical"), line

    # The feature removed again: its column stays, unused; files without it land again.
    simulate(project, before, 1, seed=4, years=False)
    removed = cycle(project, before, "--force")
    assert removed["ingested_files"] == 1 and removed["challenger_version"] == "v0003"
    assert "tenure_years" in columns(project)
    line = ok(cli(project, "reproduce", "v0002", config=before, timeout=300)).stdout
    assert line.startswith("v0002: reproducible: byte-identical"), line
