"""Predictions: the champion's scores of the rows that landed, and a waiting challenger's shadow scores."""

from typing import Any

import dagster as dg

from ct_assets.config.settings import Settings
from ct_assets.core.predictions.scoring import ScoredRun, score_new_rows
from ct_assets.core.predictions.shadow import ShadowRun
from ct_assets.defs.assets.ingestion import raw_deltas
from ct_assets.defs.constants import PREDICTIONS
from ct_assets.defs.resources import SettingsResource


@dg.asset(
    group_name=PREDICTIONS,
    deps=[raw_deltas, "champion_model"],
    kinds={"lightgbm", "duckdb"},
    code_version="1",
)
def predictions(context: dg.AssetExecutionContext, settings: SettingsResource) -> dg.MaterializeResult:
    """The champion's score and decision for every row that landed, labelled or not, in the append-only
    `predictions` table (rows a failed run missed are scored by the next one, newest first, at most
    [predictions] max_rows_per_run per run). A challenger awaiting promotion or review shadow-scores the
    same rows; its score shift, decision flips and, once labels arrive, both models' metric show here and
    in its validation report. A champion that cannot be loaded leaves the rows waiting; the run goes on."""
    s = settings.load()
    scored = score_new_rows(s, run_id=context.run_id)
    if scored.not_scored:
        context.log.warning(
            f"{scored.rows_remaining} rows wait for a champion prediction: {scored.not_scored}"
        )
    else:
        context.log.info(
            f"{scored.champion or 'no champion'} scored {scored.rows_scored} rows; "
            f"{scored.rows_remaining} still wait"
        )
    if scored.shadow is not None and scored.shadow.not_scored:
        context.log.warning(f"shadow {scored.shadow.version}: {scored.shadow.not_scored}")
    return dg.MaterializeResult(metadata={**_metadata(scored, s), **_shadow_metadata(scored.shadow, s)})


def _metadata(scored: ScoredRun, s: Settings) -> dict[str, Any]:
    return {
        "dagster/row_count": scored.rows_total,
        "champion": scored.champion or "none yet",
        "rows_scored": scored.rows_scored,
        "rows_remaining": scored.rows_remaining,
        "not_scored": scored.not_scored or "none",
        "positive_share": scored.rows_positive / scored.rows_scored if scored.rows_scored else 0.0,
        "decision_threshold": s.decision_threshold,
        "batches_scored": ", ".join(map(str, scored.batches)) or "none",
        "seconds": dg.MetadataValue.json(scored.seconds),
    }


def _shadow_metadata(run: ShadowRun | None, s: Settings) -> dict[str, Any]:
    """The shadow challenger's figures; floats so that the UI plots them run after run."""
    if run is None:
        return {"shadow": "none (no challenger awaits promotion or review)"}
    ev = run.evaluation or {}
    out: dict[str, Any] = {
        "shadow": f"{run.version}, {run.why}",
        "shadow_rows_scored": run.rows_scored,
        "shadow_not_scored": run.not_scored or "none",
    }
    if ev:
        out |= {
            "shadow_rows_compared": ev["rows"],
            "shadow_mean_score_shift": ev["mean_score_shift"],
            "shadow_decision_flips": ev["decision_flips"],
            "shadow_rows_labelled": ev["rows_labelled"],
            "shadow_evaluation": dg.MetadataValue.md(_markdown(ev, s)),
        }
        if "delta" in ev:
            out |= {
                f"shadow_champion_{s.primary_metric}": ev["champion_metric"],
                f"shadow_challenger_{s.primary_metric}": ev["challenger_metric"],
            }
    if run.report:
        out["shadow_report"] = dg.MetadataValue.path(run.report)
    return out


def _markdown(ev: dict[str, Any], s: Settings) -> str:
    lines = [
        f"**{ev['challenger_version']}** (shadow) vs champion {', '.join(ev['champion_versions'])} on "
        f"{ev['rows']:,} live rows: mean score shift {ev['mean_score_shift']:+.4f}, decisions flipped "
        f"{ev['decision_flips']:.2%} ({ev['flips_to_positive']} to positive, {ev['flips_to_negative']} to negative)."
    ]
    if "delta" in ev:
        bound = f", lower bound {ev['low']:+.4f}" if ev.get("low") is not None else ""
        lines.append(
            f"On {ev['rows_labelled']:,} labelled rows, {s.primary_metric}: champion {ev['champion_metric']:.4f}, "
            f"challenger {ev['challenger_metric']:.4f} (change {ev['delta']:+.4f}{bound})."
        )
    else:
        lines.append(f"{ev['rows_labelled']:,} labelled rows so far: {ev.get('note', '')}.")
    return "\n\n".join(lines)
