"""The champion scored on the rows that arrived after its training: its primary metric on the fresh
labels (decay) and each feature's drift against the profile in its card, recorded in champion_scores.

What the `champion_performance` asset runs after each ingest; the retrain sensor reads its verdicts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import polars as pl

from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core import alerts, registry
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.modeling import shared
from ct_assets.core.monitoring import evidence
from ct_assets.core.monitoring.signals import Decay, FeatureDrift, decay, drift
from ct_assets.core.triggers.decision import champion_watermark
from ct_assets.core.triggers.freshness import fresh_rows
from ct_assets.core.triggers.snapshot import writer_keeping_snapshot
from ct_assets.errors import CtError
from ct_assets.store import evolution
from ct_assets.store.columns import row_key
from ct_assets.store.schema import ROLE_CHAMPION
from ct_assets.store.sql import next_id, quote
from ct_assets.store.warehouse import connect_writer, transaction

HISTORY_ROWS = 30  # the newest scores shown beside the latest one


@dataclass
class ChampionScore:
    """The champion's latest health on fresh rows (or why it could not be scored)."""

    champion: str | None
    not_scored: str = ""  # why nothing was scored ("" when it was)
    decay: Decay | None = None
    drifts: list[FeatureDrift] = field(default_factory=list)
    history: list[tuple[Any, ...]] = field(default_factory=list)  # newest first
    decisions: list[evidence.Decision] = field(default_factory=list)  # batches judged by this scoring

    @property
    def drifted(self) -> list[str]:
        return [d.feature for d in self.drifts if d.drifted]


def score_champion(s: Settings, *, run_id: str = "", logger: Any = None) -> ChampionScore:
    """Score the champion on the rows ingested after its training watermark, record the verdict, and
    judge each newly landed batch (core.monitoring.evidence): a suspect batch is held back from training.

    A champion that cannot be loaded is reported, not raised: it must not fail the ingest run, nor
    block its own replacement."""
    with connect_writer(s) as con:
        champion, watermark, _ = champion_watermark(con)
        if champion is None:
            return ChampionScore(None, "nothing to score")
        frame, newest_batch = fresh_rows(con, s, watermark, with_batch_ids=True)
        labelled = frame.filter(frame[s.columns.label].is_not_null())
        stored = stored_scores(con, s, champion, labelled)
        validation = registry.latest_validation(con, champion)
        decided = evidence.decided(con)
        added_later = evolution.added_columns(con)
    try:
        loaded = shared.load(s, champion)
    except CtError as e:
        return ChampionScore(champion, f"not scored: {e}"[:500])
    reference = None
    if validation:
        reference = validation["summary"].get("holdout", {}).get("challenger", {}).get(s.primary_metric)
    scores = _complete(loaded, labelled, stored)
    y = lgbm.labels(labelled, s)
    dec = decay(s, y, scores, reference)
    profile = loaded.card.get("profile")
    landed = frame.filter(frame["_new_row"]).drop(
        "_batch_id", "_row_hash", "_new_row"
    )  # late labels: not drift
    drifts = drift(profile, landed, s, added_later) if profile and landed.height else []
    out = ChampionScore(champion, "", dec, drifts)
    batch_scores = _batch_scores(s, labelled["_batch_id"].to_numpy(), y, scores, decided)
    out.history, out.decisions = _record(
        s, out, watermark, newest_batch, landed.height, batch_scores, reference, run_id
    )
    _alert(s, out.decisions, logger)
    return out


def stored_scores(
    con: duckdb.DuckDBPyConnection, s: Settings, champion: str, rows: pl.DataFrame
) -> np.ndarray:
    """The scores `champion` already served for `rows` (its predictions in the `predictions` table, by batch
    and row key), NaN where it has none. The same model on the same stored row gives the same score, so
    these need not be computed again."""
    if not rows.height:
        return np.array([])
    key = row_key(s)[0]
    batches = ", ".join(str(int(b)) for b in rows["_batch_id"].unique().to_list())
    found = con.sql(
        f"SELECT _batch_id, {quote(key)} AS _key, score FROM predictions WHERE role = $role "
        f"AND model_version = $version AND _batch_id IN ({batches})",
        params={"role": ROLE_CHAMPION, "version": champion},
    ).pl()
    found = found.unique(subset=["_batch_id", "_key"], keep="first")
    keyed = rows.select("_batch_id", pl.col(key).alias("_key"))
    joined = keyed.join(found, on=["_batch_id", "_key"], how="left", maintain_order="left")
    return joined["score"].fill_null(float("nan")).to_numpy().astype(np.float64)


def _complete(loaded: lgbm.LoadedModel, rows: pl.DataFrame, stored: np.ndarray) -> np.ndarray:
    """The champion's scores of `rows`: the stored ones, and the model's prediction where none is stored."""
    missing = np.isnan(stored)
    if not missing.any():
        return stored
    scores = stored.copy()
    scores[missing] = loaded.predict(rows.filter(pl.Series(missing)))
    return scores


def _batch_scores(
    s: Settings,
    batch_ids: np.ndarray,
    y: np.ndarray,
    scores: np.ndarray,
    decided: dict[int, tuple[str, int]],
) -> list[evidence.BatchScore]:
    """The champion's metric on each batch to judge now (evidence.to_judge)."""
    out = []
    ids, counts = np.unique(batch_ids, return_counts=True)
    labelled = {int(b): int(n) for b, n in zip(ids.tolist(), counts.tolist(), strict=True)}
    for b in evidence.to_judge(s, labelled, decided):
        mask = batch_ids == b
        out.append(evidence.score_batch(s, int(b), y[mask], scores[mask]))
    return out


def _alert(s: Settings, decisions: list[evidence.Decision], logger: Any) -> None:
    """One `data` alert per batch held back, and per batch excluded when its successor refuted it."""
    now = utc_now()
    for d in decisions:
        if d.status == "suspect":
            alerts.raise_alert(
                s,
                kind="data",
                cause=f"holdback:{d.batch_id}",
                now=now,
                logger=logger,
                message=f"batch {d.batch_id} held back from training as suspect: {d.reason}",
                details={"batch_id": d.batch_id, "champion": d.champion},
            )
        elif d.status == "refuted":
            alerts.raise_alert(
                s,
                kind="data",
                cause=f"excluded:{d.batch_id}",
                now=now,
                logger=logger,
                message=f"batch {d.batch_id} excluded from training: {d.reason}; "
                f"`ct-assets batch release {d.batch_id} --reason ...` lets it back in",
                details={"batch_id": d.batch_id, "champion": d.champion},
            )


def _record(
    s: Settings,
    score: ChampionScore,
    watermark: int,
    newest_batch: int,
    rows: int,
    batch_scores: list[evidence.BatchScore],
    validation_value: float | None,
    run_id: str,
) -> tuple[list[tuple], list[evidence.Decision]]:
    """One champion_scores row (the retrain sensor's decay and drift inputs) and the batch decisions, in
    one transaction (a refuted batch also gets a ledger row); returns the recent history and the decisions."""
    dec = score.decay
    assert dec is not None
    now = utc_now()
    with writer_keeping_snapshot(s) as con, transaction(con):
        con.execute(
            "INSERT INTO champion_scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                next_id(con, "champion_scores", "score_id"),
                now,
                score.champion,
                watermark,
                newest_batch,
                dec.rows,
                s.primary_metric,
                None if math.isnan(dec.value) else dec.value,
                dec.reference,
                dec.decayed,
                dec.reason,
                max((d.psi for d in score.drifts), default=None),
                json.dumps(score.drifted),
                rows,
            ],
        )
        decisions = evidence.judge(con, s, score.champion, validation_value, batch_scores)
        for d in decisions:
            evidence.record(con, d, metric=s.primary_metric, now=now, run_id=run_id or None)
            if d.status == "refuted":
                registry.record(
                    con,
                    action="batch_excluded",
                    version=None,
                    champion_after=registry.champion(con),
                    now=now,
                    reason=d.reason,
                    metrics={"batch_id": d.batch_id, "value": d.value, "reference": d.reference},
                    run_id=run_id or None,
                    who="ct-assets",
                )
        history = con.execute(
            "SELECT scored_at, to_batch, rows_labelled, value, reference, decayed, drift_max_psi "
            f"FROM champion_scores WHERE champion_version = ? ORDER BY score_id DESC LIMIT {HISTORY_ROWS}",
            [score.champion],
        ).fetchall()
    return history, decisions
