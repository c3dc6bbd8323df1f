"""Shadow scoring: which challenger shadow-scores (the newest awaiting review or promotion, newer than the
champion), on which rows (those after its training data), and its evaluation against the champion on
live rows: shift and flips at once, both models' metric once labels are known, in its report too."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.gate import shadow_section
from ct_assets.core.gate.report import SHADOW_END, SHADOW_PLACEHOLDER, SHADOW_START
from ct_assets.core.modeling.metrics import roc_auc
from ct_assets.core.predictions.scoring import score_new_rows
from ct_assets.core.predictions.shadow import candidate
from ct_assets.store.warehouse import connect_reader, connect_writer, init_warehouse
from ct_assets_tests.core.predictions.support import batch, land, predictions, register


def _candidate(s: Settings) -> tuple[str, str] | None:
    with connect_reader(s) as con:
        c = candidate(con, registry.champion(con))
    return (c.version, c.why) if c else None


def _record(s: Settings, action: str, version: str) -> None:
    with connect_writer(s) as con:
        registry.record(
            con, action=action, version=version, champion_after=registry.champion(con), now=utc_now()
        )


def test_the_shadow_is_the_newest_challenger_awaiting_a_decision(warehouse: Settings) -> None:
    s = warehouse
    rows = batch(1, 400, seed=1)
    b1 = land(s, rows, "a.parquet")
    register(s, "v0001", rows, watermark_batch_id=b1)
    assert _candidate(s) is None

    register(s, "v0002", rows, action="blocked", watermark_batch_id=b1)
    assert _candidate(s) == ("v0002", "awaits review (blocked)")
    register(s, "v0003", rows, action="blocked", watermark_batch_id=b1, seed=2)
    assert _candidate(s) == ("v0003", "awaits review (blocked)")  # one at a time: the newest
    _record(s, "rejected", "v0003")
    assert _candidate(s) == ("v0002", "awaits review (blocked)")

    # Passed its validation, not promoted yet (its run died before the promotion): awaits promotion.
    register(s, "v0004", rows, action=None, watermark_batch_id=b1, seed=3)
    with connect_writer(s) as con:
        registry.record_validation(
            con,
            challenger="v0004",
            champion="v0001",
            now=utc_now(),
            passed=True,
            failed_checks=[],
            summary={},
            golden_hash="g",
            dataset_hash="d",
            report_path="",
            run_id="r",
        )
    assert _candidate(s) == ("v0004", "awaits promotion (validated)")

    # A newer champion: the older challengers waiting are stale, none shadow-scores.
    register(s, "v0005", rows, watermark_batch_id=b1, seed=4)
    assert _candidate(s) is None


def test_a_blocked_challenger_shadow_scores_the_rows_after_its_training(warehouse: Settings) -> None:
    s = warehouse
    first = batch(1, 600, seed=1)
    b1 = land(s, first, "a.parquet")
    register(s, "v0001", first, watermark_batch_id=b1, iterations=20)
    score_new_rows(s)
    # The challenger trained on batch 2 too: the rows of batch 2 must not flatter it.
    second = batch(601, 600, seed=2)
    b2 = land(s, second, "b.parquet")
    challenger = register(
        s, "v0002", pl.concat([first, second]), action="blocked", watermark_batch_id=b2, iterations=3
    )
    third = batch(1201, 800, seed=3)
    b3 = land(s, third, "c.parquet")
    _write_report(s, "v0002")

    run = score_new_rows(s)
    assert run.rows_scored == 1400 and run.batches == [b3, b2]  # batch 2 waited: no champion scored it
    assert run.shadow is not None
    assert (run.shadow.version, run.shadow.rows_scored, run.shadow.not_scored) == ("v0002", 800, "")
    shadow = predictions(s, "role = 'shadow'")
    assert set(shadow["_batch_id"]) == {b3} and set(shadow["model_version"]) == {"v0002"}
    np.testing.assert_allclose(shadow["score"].to_numpy(), challenger.predict(third), atol=1e-12)
    assert shadow["decision"].to_list() == (shadow["score"] >= s.decision_threshold).to_list()

    ev = run.shadow.evaluation
    assert ev is not None
    champ = predictions(s, f"role = 'champion' AND _batch_id = {b3}")["score"].to_numpy()
    ch = shadow["score"].to_numpy()
    thr = s.decision_threshold
    assert ev["rows"] == 800 and ev["champion_versions"] == ["v0001"]
    assert ev["mean_score_shift"] == pytest.approx(float(np.mean(ch - champ)))
    assert ev["decision_flips"] == pytest.approx(float(np.mean((ch >= thr) != (champ >= thr))))
    assert ev["flips_to_positive"] == int(np.sum((ch >= thr) & (champ < thr)))
    labelled = third["label"].is_not_null().to_numpy()
    y = third["label"].to_numpy()[labelled]
    assert ev["rows_labelled"] == int(labelled.sum()) == 798
    assert ev["challenger_metric"] == pytest.approx(roc_auc(y, ch[labelled]))
    assert ev["champion_metric"] == pytest.approx(roc_auc(y, champ[labelled]))
    assert ev["delta"] == pytest.approx(ev["challenger_metric"] - ev["champion_metric"])
    assert ev["low"] < ev["delta"] < ev["high"]
    assert ev["delta"] < 0  # three boosting rounds against twenty

    # The validation report now shows it, in place of the placeholder, and its JSON holds the figures.
    assert run.shadow.report == str(s.paths.reports / "v0002.html")
    page = (s.paths.reports / "v0002.html").read_text()
    assert SHADOW_PLACEHOLDER not in page and page.count(SHADOW_START) == 1
    assert f"{ev['challenger_metric']:.4f}" in page and f"{ev['decision_flips']:.2%}" in page
    assert json.loads((s.paths.reports / "v0002.json").read_text())["shadow"]["rows"] == 800


def test_both_metrics_appear_once_the_labels_of_the_shadowed_rows_are_known(warehouse: Settings) -> None:
    s = warehouse
    first = batch(1, 600, seed=4)
    b1 = land(s, first, "a.parquet")
    register(s, "v0001", first, watermark_batch_id=b1)
    register(s, "v0002", first, action="blocked", watermark_batch_id=b1, iterations=4)
    live = batch(601, 600, seed=5)
    labels = live["label"]
    b2 = land(s, live.with_columns(pl.lit(None, dtype=pl.Int64).alias("label")), "b.parquet")

    unlabelled = score_new_rows(s).shadow
    assert unlabelled is not None and unlabelled.evaluation is not None
    assert unlabelled.evaluation["rows"] == 600 and unlabelled.evaluation["rows_labelled"] == 0
    assert "delta" not in unlabelled.evaluation
    assert unlabelled.evaluation["note"].startswith("not enough labels yet")

    # The labels become known (a stand-in for late labels attaching to the stored rows).
    with connect_writer(s) as con:
        con.register("known", pl.DataFrame({"row_id": live["row_id"], "y": labels}).to_arrow())
        con.execute(
            "UPDATE raw_deltas SET label = known.y FROM known WHERE raw_deltas.row_id = known.row_id "
            "AND raw_deltas._batch_id = ?",
            [b2],
        )
    later = score_new_rows(s, now=utc_now() + timedelta(hours=1))
    assert later.rows_scored == 0  # nothing new to score, yet the evaluation is refreshed
    assert later.shadow is not None and later.shadow.evaluation is not None
    ev = later.shadow.evaluation
    assert ev["rows_labelled"] == int(labels.is_not_null().sum())
    assert {"champion_metric", "challenger_metric", "delta", "low", "high"} <= set(ev)


def test_without_shadow_scoring_nothing_is_shadow_scored(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(predictions={"shadow": False})
    init_warehouse(s)
    rows = batch(1, 300, seed=6)
    b1 = land(s, rows, "a.parquet")
    register(s, "v0001", rows, watermark_batch_id=b1)
    register(s, "v0002", rows, action="blocked", watermark_batch_id=b1, iterations=3)
    land(s, batch(301, 300, seed=7), "b.parquet")
    run = score_new_rows(s)
    assert run.shadow is None and run.rows_scored == 600
    assert predictions(s, "role = 'shadow'").height == 0


def _write_report(s: Settings, version: str) -> None:
    """A report as validation writes it, reduced to what the shadow section needs."""
    s.paths.reports.mkdir(parents=True, exist_ok=True)
    page = f"<!DOCTYPE html><html><body><h1>report</h1>{SHADOW_START}{SHADOW_PLACEHOLDER}{SHADOW_END}</body></html>"
    (s.paths.reports / f"{version}.html").write_text(page)
    (s.paths.reports / f"{version}.json").write_text(json.dumps({"challenger_version": version}))


EVALUATION = {
    "challenger_version": "v0002",
    "champion_versions": ["v0001"],
    "evaluated_at": "2026-01-01 00:00:00 <script>",
    "rows": 10,
    "mean_score_shift": 0.01,
    "mean_abs_score_shift": 0.02,
    "decision_flips": 0.1,
    "flips_to_positive": 1,
    "flips_to_negative": 0,
    "threshold": 0.5,
    "metric": "roc_auc",
    "rows_labelled": 0,
    "positives": 0,
    "note": "not enough labels yet <b>",
}


def test_the_section_replaces_the_last_one_and_older_reports_get_one_before_their_end() -> None:
    page = f"<html><body><p>a</p>{SHADOW_START}old{SHADOW_END}<p>b</p></body></html>"
    once = shadow_section.splice(page, EVALUATION)
    assert "old" not in once and once.count(SHADOW_START) == once.count(SHADOW_END) == 1
    assert once.startswith("<html><body><p>a</p>") and once.endswith("<p>b</p></body></html>")
    assert shadow_section.splice(once, EVALUATION) == once
    # Values are escaped.
    assert "<script>" not in once and "&lt;script&gt;" in once and "&lt;b&gt;" in once
    older = shadow_section.splice("<html><body><p>a</p></body></html>", EVALUATION)
    assert older.startswith("<html><body><p>a</p>" + SHADOW_START) and older.endswith(
        SHADOW_END + "</body></html>"
    )
