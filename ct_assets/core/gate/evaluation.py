"""One validation of a challenger: evaluation sets, the gate, what changed for users, the report files."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from ct_assets.common.stopwatch import Stopwatch
from ct_assets.config import Settings
from ct_assets.core import gate
from ct_assets.core.datasets.golden import read_golden
from ct_assets.core.datasets.training import DatasetInfo, read_split
from ct_assets.core.gate import comparable, report, score_cache
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.modeling import shared

EVAL_SETS = ("golden", "holdout")


@dataclass
class EvalData:
    """The evaluation sets of one validation, and how many champion scores came from its cache."""

    sets: list[gate.EvalSet]
    champion_scores_reused: int
    rows: int
    seconds: dict[str, float]  # read, challenger scores, champion scores, score cache upkeep


def eval_sets(
    s: Settings,
    con: duckdb.DuckDBPyConnection,
    ds: DatasetInfo,
    challenger: lgbm.LoadedModel,
    champion: lgbm.LoadedModel | None,
) -> EvalData:
    """The frozen golden set and the data set's recent holdout, scored by both models.

    The champion's scores on rows it was scored on at its last validation are reused (score_cache);
    afterwards both models' scores on these rows are kept for the next validation.
    """
    watch = Stopwatch()
    restricted = comparable.restrict(
        con,
        s,
        {
            "golden": read_golden(con, s, ds.golden_hash, with_row_hashes=True, with_batch_ids=True),
            "holdout": recent_holdout(con, s, ds, with_row_hashes=True, with_batch_ids=True),
        },
        [challenger, champion],
    )
    frames = {name: r.frame for name, r in restricted.items()}
    hashes = [frames[name][score_cache.HASH_COLUMN].to_numpy() for name in EVAL_SETS]
    watch.lap("read")
    challenger_scores = [challenger.predict(frames[name]) for name in EVAL_SETS]
    watch.lap("challenger scores")
    champion_scores: list[np.ndarray | None] = [None] * len(EVAL_SETS)
    reused = 0
    if champion is not None:
        scored = [score_cache.score(champion, frames[name], s.paths.state) for name in EVAL_SETS]
        champion_scores = [x.scores for x in scored]
        reused = sum(x.reused for x in scored)
    watch.lap("champion scores")
    keep = {challenger.version}
    score_cache.save(s.paths.state, challenger, hashes, challenger_scores)
    if champion is not None:
        keep.add(champion.version)
        score_cache.save(s.paths.state, champion, hashes, [x for x in champion_scores if x is not None])
    score_cache.prune(s.paths.state, keep)
    watch.lap("score cache upkeep")
    sets = [
        gate.EvalSet(
            name=name,
            y=lgbm.labels(frames[name], s),
            slices={c: frames[name][c].fill_null("(null)").to_numpy() for c in s.columns.slices},
            challenger=challenger_scores[i],
            champion=champion_scores[i],
            not_compared=restricted[name].not_compared,
            note=restricted[name].note,
        )
        for i, name in enumerate(EVAL_SETS)
    ]
    return EvalData(sets, reused, sum(len(h) for h in hashes), watch.seconds)


def recent_holdout(
    con: duckdb.DuckDBPyConnection,
    s: Settings,
    ds: DatasetInfo,
    *,
    with_row_hashes: bool = False,
    with_batch_ids: bool = False,
) -> pl.DataFrame:
    """The holdout rows the gate compares on: all of them (read and checked against the data set's
    hash), then the newest [gate] holdout_max_rows of them, so that scoring costs do not grow with the
    window."""
    rows = read_split(con, s, ds, "holdout", with_row_hashes=with_row_hashes, with_batch_ids=with_batch_ids)
    cap = s.gate.holdout_max_rows
    return rows.tail(cap) if cap and rows.height > cap else rows


def holdout_note(sets: list[gate.EvalSet], ds: DatasetInfo) -> str:
    holdout = next(x for x in sets if x.name == "holdout")
    compared = len(holdout.y)
    if holdout.note:
        return holdout.note
    if compared < ds.n_holdout:
        return f"the newest {compared:,} of the {ds.n_holdout:,} holdout rows ([gate] holdout_max_rows)"
    return f"all {ds.n_holdout:,} holdout rows"


def golden_note(sets: list[gate.EvalSet]) -> str:
    """How the golden set was compared, when not on all its rows (models with different features)."""
    golden = next(x for x in sets if x.name == "golden")
    return f"not compared: {golden.not_compared}" if golden.not_compared else golden.note or "all its rows"


def gain_shares(m: lgbm.LoadedModel) -> dict[str, float]:
    gains = m.booster.feature_importance(importance_type="gain")
    total = float(gains.sum()) or 1.0
    return {n: float(g) / total for n, g in zip(m.booster.feature_name(), gains, strict=True)}


def importance_movers(
    challenger: lgbm.LoadedModel, champion: lgbm.LoadedModel | None, top: int = 6
) -> list[dict[str, Any]]:
    """The features whose share of the total gain moved most between champion and challenger."""
    if champion is None:
        return []
    a, b = gain_shares(champion), gain_shares(challenger)
    changes = {f: b.get(f, 0.0) - a.get(f, 0.0) for f in set(a) | set(b)}
    order = sorted(changes, key=lambda f: (-abs(changes[f]), f))[:top]
    return [
        {"feature": f, "champion": a.get(f, 0.0), "challenger": b.get(f, 0.0), "change": changes[f]}
        for f in order
    ]


@dataclass
class ReportFiles:
    html: Path
    json: Path


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` whole (temp file + rename): a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(
    s: Settings, result: gate.GateResult, sets: list[gate.EvalSet], meta: dict[str, Any]
) -> ReportFiles:
    """`<reports>/<version>.html` (self-contained) and `<version>.json` (the same figures, for machines)."""
    version = meta["challenger_version"]
    lgbm.model_dir(s.paths.models, version)  # a version name, never a path
    files = ReportFiles(s.paths.reports / f"{version}.html", s.paths.reports / f"{version}.json")
    write_atomic(files.json, json.dumps({**meta, **result.to_json()}, indent=2, default=str))
    write_atomic(files.html, report.render(result, sets, meta))
    shared.publish_report(s, files.json, files.html)
    return files


def report_path(s: Settings, version: str) -> Path:
    """Where the report of a version is (refusing anything that is not a version name)."""
    lgbm.model_dir(s.paths.models, version)
    return s.paths.reports / f"{version}.html"
