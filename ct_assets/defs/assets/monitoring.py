"""Monitoring: the champion scored on fresh labels (decay) and the features' drift, after every ingest."""

import json
import math

import dagster as dg
import numpy as np

from ct_assets.common.clock import utc_now
from ct_assets.core import monitoring, registry
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.triggers.decision import champion_watermark
from ct_assets.core.triggers.freshness import fresh_rows
from ct_assets.core.triggers.snapshot import writer_keeping_snapshot
from ct_assets.defs.assets.ingestion import raw_deltas
from ct_assets.defs.constants import MONITORING
from ct_assets.defs.metadata import table
from ct_assets.defs.resources import SettingsResource
from ct_assets.errors import CtError
from ct_assets.store.sql import next_id
from ct_assets.store.warehouse import connect_writer, transaction


@dg.asset(
    group_name=MONITORING, deps=[raw_deltas, "champion_model"], kinds={"lightgbm", "duckdb"}, code_version="1"
)
def champion_performance(
    context: dg.AssetExecutionContext, settings: SettingsResource
) -> dg.MaterializeResult:
    """The champion scored on the labelled rows that arrived after its training (decay), and the drift
    (PSI) of every feature in those rows against the champion's training profile. Runs after each
    ingest; the retrain sensor reads its verdicts. Its metadata plots the metric over time."""
    s = settings.load()
    now = utc_now()
    with connect_writer(s) as con:
        champion, watermark, _ = champion_watermark(con)
        if champion is None:
            return dg.MaterializeResult(metadata={"champion": "none yet", "verdict": "nothing to score"})
        frame, newest_batch = fresh_rows(con, s, watermark)
        validation = registry.latest_validation(con, champion)
    try:
        loaded = lgbm.load_version(s.paths.models, champion)
    except CtError as e:  # a broken champion must not fail the ingest run, nor block its replacement
        context.log.warning(f"champion {champion} could not be scored on fresh rows: {e}")
        return dg.MaterializeResult(metadata={"champion": champion, "verdict": f"not scored: {e}"[:500]})
    labelled = frame.filter(frame[s.columns.label].is_not_null())
    reference = None
    if validation:
        reference = validation["summary"].get("holdout", {}).get("challenger", {}).get(s.primary_metric)
    dec = monitoring.decay(
        s, lgbm.labels(labelled, s), loaded.predict(labelled) if labelled.height else np.array([]), reference
    )
    profile = loaded.card.get("profile")
    drifts = monitoring.drift(profile, frame, s) if profile else []
    drifted = [d.feature for d in drifts if d.drifted]
    with writer_keeping_snapshot(s) as con, transaction(con):
        con.execute(
            "INSERT INTO champion_scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                next_id(con, "champion_scores", "score_id"),
                now,
                champion,
                watermark,
                newest_batch,
                dec.rows,
                s.primary_metric,
                None if math.isnan(dec.value) else dec.value,
                dec.reference,
                dec.decayed,
                dec.reason,
                max((d.psi for d in drifts), default=None),
                json.dumps(drifted),
                frame.height,
            ],
        )
        history = con.execute(
            "SELECT scored_at, to_batch, rows_labelled, value, reference, decayed, drift_max_psi "
            "FROM champion_scores WHERE champion_version = ? ORDER BY score_id DESC LIMIT 30",
            [champion],
        ).fetchall()
    context.log.info(f"champion {champion} on fresh labels: {dec.reason}; drifted: {drifted or 'none'}")
    value = {} if math.isnan(dec.value) else {f"{s.primary_metric}_on_fresh_labels": float(dec.value)}
    return dg.MaterializeResult(
        metadata={
            **value,
            "champion": champion,
            "fresh_labelled_rows": dec.rows,
            "decay": "DECAYED: " + dec.reason if dec.decayed else dec.reason,
            "validation_reference": dec.reference if dec.reference is not None else -1.0,
            "drifted_features": ", ".join(drifted) or "none",
            "drift": table(
                [
                    {"feature": d.feature, "psi": round(d.psi, 4), "rows": d.rows, "drifted": d.drifted}
                    for d in drifts
                ],
                ["feature", "psi", "rows", "drifted"],
            ),
            "over_time": table(
                [
                    {
                        "scored_at": str(h[0]),
                        "to_batch": h[1],
                        "rows": h[2],
                        "value": None if h[3] is None else round(h[3], 4),
                        "reference": h[4],
                        "decayed": h[5],
                        "max_psi": None if h[6] is None else round(h[6], 4),
                    }
                    for h in history
                ]
            ),
        },
    )
