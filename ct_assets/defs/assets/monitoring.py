"""Monitoring: the champion scored on fresh labels (decay) and the features' drift, after every ingest."""

import math

import dagster as dg

from ct_assets.core.monitoring.champion import score_champion
from ct_assets.defs.assets.ingestion import raw_deltas
from ct_assets.defs.constants import MONITORING
from ct_assets.defs.metadata import table
from ct_assets.defs.resources import SettingsResource


@dg.asset(group_name=MONITORING, deps=[raw_deltas, "champion_model"], kinds={"lightgbm", "duckdb"})
def champion_performance(
    context: dg.AssetExecutionContext, settings: SettingsResource
) -> dg.MaterializeResult:
    """The champion scored on the labelled rows that arrived after its training (decay), and the drift
    (PSI) of every feature in those rows against the champion's training profile. Runs after each
    ingest; the retrain sensor reads its verdicts. Its metadata plots the metric over time."""
    s = settings.load()
    score = score_champion(s)
    if score.not_scored:
        if score.champion is not None:
            context.log.warning(
                f"champion {score.champion} could not be scored on fresh rows: {score.not_scored}"
            )
        return dg.MaterializeResult(
            metadata={"champion": score.champion or "none yet", "verdict": score.not_scored}
        )
    dec = score.decay
    assert dec is not None
    context.log.info(
        f"champion {score.champion} on fresh labels: {dec.reason}; drifted: {score.drifted or 'none'}"
    )
    value = {} if math.isnan(dec.value) else {f"{s.primary_metric}_on_fresh_labels": float(dec.value)}
    return dg.MaterializeResult(
        metadata={
            **value,
            "champion": score.champion,
            "fresh_labelled_rows": dec.rows,
            "decay": "DECAYED: " + dec.reason if dec.decayed else dec.reason,
            "validation_reference": dec.reference if dec.reference is not None else -1.0,
            "drifted_features": ", ".join(score.drifted) or "none",
            "drift": table(
                [
                    {"feature": d.feature, "psi": round(d.psi, 4), "rows": d.rows, "drifted": d.drifted}
                    for d in score.drifts
                ],
                ["feature", "psi", "rows", "drifted"],
            ),
            "over_time": table([_history_row(h) for h in score.history]),
        },
    )


def _history_row(h: tuple) -> dict:
    return {
        "scored_at": str(h[0]),
        "to_batch": h[1],
        "rows": h[2],
        "value": None if h[3] is None else round(h[3], 4),
        "reference": h[4],
        "decayed": h[5],
        "max_psi": None if h[6] is None else round(h[6], 4),
    }
