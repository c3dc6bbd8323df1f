"""Shadow scoring: a challenger awaiting promotion or review scores the rows the champion serves, and
its scores are compared with the champion's on those live rows.

Which challenger: the newest one, newer than the champion, whose latest ledger row is `blocked` (the
review queue) or that passed its validation without a ledger decision yet (awaiting promotion). One
at a time, so that the cost of an ingest run stays bounded; an older queued challenger stops
shadow-scoring when a newer one arrives or a newer champion is promoted.

The comparison (`evaluate`): on every row both have scored (the newest SHADOW_EVAL_MAX_ROWS), how far
the challenger's scores move from the champion's and how many decisions flip at the threshold; on those
rows whose label is known now, both models' primary metric and the paired difference with its
interval, as the gate computes it (informative: the gate is not run again). It goes into the predictions
asset's metadata and into a section of the challenger's validation report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import polars as pl

from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.gate import stats
from ct_assets.core.gate.paired import paired_difference, status_of, z_value
from ct_assets.core.gate.results import EvalSet
from ct_assets.core.gate.secondary import sign
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.predictions.labels import labels_now_sql
from ct_assets.store.schema import ROLE_CHAMPION, ROLE_SHADOW, row_key
from ct_assets.store.sql import quote

SHADOW_EVAL_MAX_ROWS = 1_000_000  # the comparison reads at most this many of the newest paired rows
MIN_CLASS_ROWS = 2  # labelled rows of each class needed before the metrics are compared


@dataclass(frozen=True)
class Candidate:
    """The challenger that shadow-scores, and the newest batch it was trained on (only later rows are
    shadow-scored: rows it trained on would flatter it)."""

    version: str
    watermark_batch_id: int
    why: str


@dataclass
class ShadowRun:
    """What the shadow challenger did in one run."""

    version: str
    why: str
    rows_scored: int = 0
    not_scored: str = ""
    evaluation: dict[str, Any] | None = None
    report: str | None = None  # the validation report that now shows the evaluation


def _number(version: str | None) -> int:
    return int(version[1:]) if version and lgbm.VERSION_PATTERN.fullmatch(version) else -1


def candidate(con: duckdb.DuckDBPyConnection, champion: str | None) -> Candidate | None:
    """The newest challenger awaiting review (blocked) or promotion (validated, undecided), if it is newer
    than the champion."""
    if champion is None:
        return None
    waiting = {e.version: "awaits review (blocked)" for e in registry.review_queue(con) if e.version}
    decided = {
        r[0] for r in con.execute("SELECT DISTINCT version FROM ledger WHERE version IS NOT NULL").fetchall()
    }
    for (version,) in con.execute(
        "SELECT DISTINCT challenger_version FROM validations WHERE passed"
    ).fetchall():
        if version not in decided:
            waiting.setdefault(version, "awaits promotion (validated)")
    newer = [v for v in waiting if _number(v) > _number(champion)]
    if not newer:
        return None
    version = max(newer, key=_number)
    rec = registry.model(con, version)
    if rec is None:
        return None
    return Candidate(version, int(rec.watermark_batch_id or 0), waiting[version])


def paired_rows(con: duckdb.DuckDBPyConnection, s: Settings, version: str) -> pl.DataFrame:
    """The newest rows both the challenger `version` (shadow) and a champion scored: both scores, the
    champion's version, and the label as known now."""
    key = quote(row_key(s)[0])
    since = con.execute(
        "SELECT coalesce(min(_batch_id), 0) FROM predictions WHERE role = ? AND model_version = ?",
        [ROLE_SHADOW, version],
    ).fetchall()[0][0]
    return con.sql(
        f"""SELECT c.model_version AS champion_version, c.score AS champion, sh.score AS challenger,
                   l.{quote(s.columns.label)} AS label
            FROM predictions sh
            JOIN predictions c ON c._batch_id = sh._batch_id AND c.{key} = sh.{key} AND c.role = ?
            LEFT JOIN ({labels_now_sql(s, int(since))}) l ON l._batch_id = sh._batch_id AND l.{key} = sh.{key}
            WHERE sh.role = ? AND sh.model_version = ?
            ORDER BY sh._batch_id DESC LIMIT {SHADOW_EVAL_MAX_ROWS}""",
        params=[ROLE_CHAMPION, ROLE_SHADOW, version],
    ).pl()


def evaluate(
    con: duckdb.DuckDBPyConnection, s: Settings, version: str, now: datetime
) -> dict[str, Any] | None:
    """The challenger's shadow evaluation against the champion on live rows (None before it scored any)."""
    rows = paired_rows(con, s, version)
    if not rows.height:
        return None
    return compare(rows, s, version, now)


def compare(rows: pl.DataFrame, s: Settings, version: str, now: datetime) -> dict[str, Any]:
    """Score shift and decision flips on every paired row; on the labelled ones, both models' primary
    metric and their paired difference (challenger minus champion, positive is better)."""
    thr = s.decision_threshold
    ch, cp = rows["challenger"].to_numpy(), rows["champion"].to_numpy()
    up, down = (ch >= thr) & (cp < thr), (ch < thr) & (cp >= thr)
    out: dict[str, Any] = {
        "challenger_version": version,
        "champion_versions": sorted(set(rows["champion_version"].to_list())),
        "evaluated_at": now.isoformat(sep=" ", timespec="seconds"),
        "rows": rows.height,
        "mean_score_shift": float(np.mean(ch - cp)),
        "mean_abs_score_shift": float(np.mean(np.abs(ch - cp))),
        "decision_flips": float(np.mean(up | down)),
        "flips_to_positive": int(up.sum()),
        "flips_to_negative": int(down.sum()),
        "threshold": thr,
        "metric": s.primary_metric,
    }
    labelled = rows.filter(pl.col("label").is_not_null()).rename({"label": s.columns.label})
    out.update(_metrics(s, labelled))
    return out


def _metrics(s: Settings, labelled: pl.DataFrame) -> dict[str, Any]:
    """Both models' primary metric on the labelled paired rows, and the paired difference with its
    interval at [gate] confidence (DeLong for ROC AUC, the paired bootstrap otherwise)."""
    y = lgbm.labels(labelled, s)
    positives = int(y.sum())
    out: dict[str, Any] = {"rows_labelled": len(y), "positives": positives}
    if min(positives, len(y) - positives) < MIN_CLASS_ROWS:
        return {**out, "note": f"not enough labels yet (need {MIN_CLASS_ROWS} of each class)"}
    g, metric, thr = s.gate, s.primary_metric, s.decision_threshold
    ch, cp = labelled["challenger"].to_numpy(), labelled["champion"].to_numpy()
    evs = EvalSet("shadow", y, {}, ch, cp)
    ranked = stats.PairedScores(y, ch, cp) if metric == "roc_auc" else None
    boot = None
    if ranked is None:
        request = stats.PairedRequest(stats.weighted_metric(metric, thr), y, ch, cp, sign(metric))
        boot = stats.bootstrap_differences(len(y), {"p": request}, resamples=g.bootstrap_resamples)["p"]
    d = paired_difference(metric, evs, None, thr, boot, ranked)
    low = high = None
    if d.se is not None and not math.isnan(d.delta):
        low, high = d.delta - z_value(g.confidence) * d.se, d.delta + z_value(g.confidence) * d.se
    return {
        **out,
        "champion_metric": d.champion,
        "challenger_metric": d.challenger,
        "delta": d.delta,
        "low": low,
        "high": high,
        "confidence": g.confidence,
        "tolerance": g.tolerance,
        "status": "n/a" if math.isnan(d.delta) else status_of(d.delta, low, g.tolerance, g.rule),
    }
