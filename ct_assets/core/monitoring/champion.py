"""The champion scored on the rows that arrived after its training: its primary metric on the fresh
labels (decay) and each feature's drift against the profile in its card, recorded in champion_scores.

What the `champion_performance` asset runs after each ingest; the retrain sensor reads its verdicts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.monitoring.signals import Decay, FeatureDrift, decay, drift
from ct_assets.core.triggers.decision import champion_watermark
from ct_assets.core.triggers.freshness import fresh_rows
from ct_assets.core.triggers.snapshot import writer_keeping_snapshot
from ct_assets.errors import CtError
from ct_assets.store.sql import next_id
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

    @property
    def drifted(self) -> list[str]:
        return [d.feature for d in self.drifts if d.drifted]


def score_champion(s: Settings) -> ChampionScore:
    """Score the champion on the rows ingested after its training watermark and record the verdict.

    A champion that cannot be loaded is reported, not raised: it must not fail the ingest run, nor
    block its own replacement."""
    with connect_writer(s) as con:
        champion, watermark, _ = champion_watermark(con)
        if champion is None:
            return ChampionScore(None, "nothing to score")
        frame, newest_batch = fresh_rows(con, s, watermark)
        validation = registry.latest_validation(con, champion)
    try:
        loaded = lgbm.load_version(s.paths.models, champion)
    except CtError as e:
        return ChampionScore(champion, f"not scored: {e}"[:500])
    labelled = frame.filter(frame[s.columns.label].is_not_null())
    reference = None
    if validation:
        reference = validation["summary"].get("holdout", {}).get("challenger", {}).get(s.primary_metric)
    scores = loaded.predict(labelled) if labelled.height else np.array([])
    dec = decay(s, lgbm.labels(labelled, s), scores, reference)
    profile = loaded.card.get("profile")
    drifts = drift(profile, frame, s) if profile else []
    out = ChampionScore(champion, "", dec, drifts)
    out.history = _record(s, out, watermark, newest_batch, frame.height)
    return out


def _record(s: Settings, score: ChampionScore, watermark: int, newest_batch: int, rows: int) -> list[tuple]:
    """One champion_scores row (the retrain sensor's decay and drift inputs); returns the recent history."""
    dec = score.decay
    assert dec is not None
    with writer_keeping_snapshot(s) as con, transaction(con):
        con.execute(
            "INSERT INTO champion_scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                next_id(con, "champion_scores", "score_id"),
                utc_now(),
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
        return con.execute(
            "SELECT scored_at, to_batch, rows_labelled, value, reference, decayed, drift_max_psi "
            f"FROM champion_scores WHERE champion_version = ? ORDER BY score_id DESC LIMIT {HISTORY_ROWS}",
            [score.champion],
        ).fetchall()
