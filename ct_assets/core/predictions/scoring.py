"""The champion's scores of the rows that landed, appended to the `predictions` table.

What the `predictions` asset runs in every ingest run. Every row gets one champion prediction: the rows
that have none, newest batch first and at most [predictions] max_rows_per_run of them per run, are
scored by the champion then in force. So the rows a failed run missed, and the rows that landed while
there was no champion, are scored by a later run; how many still wait is reported. A challenger awaiting
promotion or review shadow-scores the same rows (core.predictions.shadow).

A champion that cannot be loaded is reported, never raised: it must not fail the ingest run, and its
rows wait for the next one.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import numpy as np
import polars as pl

from ct_assets.common import failpoints
from ct_assets.common.clock import utc_now
from ct_assets.common.stopwatch import Stopwatch
from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.gate import shadow_section
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.modeling import shared
from ct_assets.core.predictions.shadow import Candidate, ShadowRun, candidate, evaluate
from ct_assets.core.triggers.snapshot import writer_keeping_snapshot
from ct_assets.errors import CtError
from ct_assets.store.schema import ROLE_CHAMPION, ROLE_SHADOW, row_key
from ct_assets.store.sql import quote
from ct_assets.store.warehouse import connect_writer, named_lock, transaction


@dataclass(frozen=True)
class Backlog:
    """Every batch as (batch id, rows, rows with a champion prediction), newest first."""

    batches: list[tuple[int, int, int]]

    @property
    def waiting(self) -> int:
        return sum(n - done for _, n, done in self.batches)

    @property
    def scored(self) -> int:
        return sum(done for _, _, done in self.batches)

    def chosen(self, limit: int) -> list[tuple[int, int, bool]]:
        """(batch, rows to score, whole batch?) of the rows to score now: newest batches first, at most
        `limit` rows."""
        out, left = [], limit
        for batch, n, done in self.batches:
            if left <= 0:
                break
            if n > done:
                take = min(n - done, left)
                out.append((batch, take, done == 0 and take == n))
                left -= take
        return out


@dataclass
class ScoredRun:
    """What one run scored, and what still waits."""

    champion: str | None
    not_scored: str = ""  # why the waiting rows were not scored ("" when they were, or none waited)
    rows_scored: int = 0
    rows_positive: int = 0  # of them, decided positive at the threshold
    rows_remaining: int = 0  # rows still without a champion prediction after this run
    rows_total: int = 0  # champion predictions in the table after this run
    batches: list[int] = field(default_factory=list)
    shadow: ShadowRun | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def predictions_lock(s: Settings) -> contextlib.AbstractContextManager[None]:
    """One scoring at a time (a sensor-launched ingest run and a `cycle` may overlap): the second waits,
    then finds the rows the first scored."""
    return named_lock(s, "predictions", s.lock_timeout_seconds, "the predictions lock")


def score_new_rows(s: Settings, *, run_id: str = "", now: datetime | None = None) -> ScoredRun:
    """Score the rows without a champion prediction (newest first, bounded), shadow-score them with a
    waiting challenger, append both to `predictions`, and refresh the challenger's shadow evaluation."""
    watch = Stopwatch()
    with predictions_lock(s):
        with connect_writer(s) as con:
            champion = registry.champion(con)
            backlog = read_backlog(con, s)
            out = ScoredRun(champion, rows_remaining=backlog.waiting, rows_total=backlog.scored)
            if champion is None:
                out.not_scored = "no champion yet" if backlog.waiting else ""
                return out
            waiting = candidate(con, champion) if s.predictions.shadow else None
            loaded, out.not_scored = _load(s, champion) if backlog.waiting else (None, "")
            chosen = backlog.chosen(s.predictions.max_rows_per_run) if loaded else []
            frame = read_rows(con, s, chosen)
        watch.lap("read")
        champion_scores = loaded.predict(frame) if loaded is not None and frame.height else None
        watch.lap("champion scores")
        out.shadow, shadow_rows, shadow_scores = _shadow_scores(s, waiting, frame, champion_scores)
        watch.lap("shadow scores")
        now = now or utc_now()
        if champion_scores is not None or out.shadow is not None:
            with writer_keeping_snapshot(s) as con:
                if champion_scores is not None:
                    parts = [ModelScores(frame, champion_scores, champion, ROLE_CHAMPION)]
                    if shadow_scores is not None and out.shadow is not None:
                        parts.append(ModelScores(shadow_rows, shadow_scores, out.shadow.version, ROLE_SHADOW))
                    _append(con, s, parts, now, run_id, watch)
                    out.rows_scored = frame.height
                    out.rows_positive = int(np.sum(champion_scores >= s.decision_threshold))
                    out.batches = sorted(set(frame["_batch_id"].to_list()), reverse=True)
                if out.shadow is not None:
                    out.shadow.evaluation = evaluate(con, s, out.shadow.version, now)
                    watch.lap("shadow evaluation")
            watch.lap("close")
    out.rows_remaining = backlog.waiting - out.rows_scored
    out.rows_total = backlog.scored + out.rows_scored
    if out.shadow is not None and out.shadow.evaluation is not None:
        out.shadow.report = shadow_section.attach(s, out.shadow.version, out.shadow.evaluation)
    out.seconds = watch.seconds
    return out


@dataclass(frozen=True)
class ModelScores:
    """One model's scores of some rows, in one role."""

    rows: pl.DataFrame
    scores: np.ndarray
    version: str
    role: str


def _append(
    con: duckdb.DuckDBPyConnection,
    s: Settings,
    parts: list[ModelScores],
    now: datetime,
    run_id: str,
    watch: Stopwatch,
) -> None:
    """The champion's scores, then the shadow's, in one transaction: a run that dies leaves neither."""
    with transaction(con):
        for part in parts:
            write(con, s, part.rows, part.scores, part.role, part.version, now, run_id)
            watch.lap("write" if part.role == ROLE_CHAMPION else "shadow write")
        failpoints.hit("predictions.before_commit")


def _load(s: Settings, version: str) -> tuple[lgbm.LoadedModel | None, str]:
    """The model, or why it cannot score the warehouse's rows (never raised)."""
    try:
        loaded = shared.load(s, version)
    except CtError as e:
        return None, f"{version} could not be loaded: {e}"[:500]
    stored = set(s.feature_names)
    missing = [f["name"] for f in loaded.features if f["name"] not in stored]
    if missing:
        return None, f"{version} needs feature {missing[0]!r}, which the warehouse does not hold"
    return loaded, ""


def _shadow_scores(
    s: Settings, waiting: Candidate | None, frame: pl.DataFrame, champion_scores: np.ndarray | None
) -> tuple[ShadowRun | None, pl.DataFrame, np.ndarray | None]:
    """The waiting challenger's scores of this run's rows that landed after its training data (rows it
    trained on would flatter it)."""
    if waiting is None:
        return None, frame.clear(), None
    run = ShadowRun(waiting.version, waiting.why)
    if champion_scores is None:
        return run, frame.clear(), None
    loaded, why = _load(s, waiting.version)
    if loaded is None:
        run.not_scored = why
        return run, frame.clear(), None
    rows = frame.filter(pl.col("_batch_id") > waiting.watermark_batch_id)
    run.rows_scored = rows.height
    return run, rows, loaded.predict(rows) if rows.height else None


def read_backlog(con: duckdb.DuckDBPyConnection, s: Settings) -> Backlog:
    """Rows and champion predictions per batch (rows without an id: distinct rows, since equal rows share
    one key and one prediction)."""
    rows = "count(*)" if s.columns.row_id else "count(DISTINCT _row_hash)"
    found = con.execute(
        f"""WITH r AS (SELECT _batch_id, {rows} AS n FROM raw_deltas GROUP BY _batch_id),
                 p AS (SELECT _batch_id, count(*) AS n FROM predictions WHERE role = '{ROLE_CHAMPION}'
                       GROUP BY _batch_id)
            SELECT r._batch_id, r.n, coalesce(p.n, 0) FROM r LEFT JOIN p USING (_batch_id)
            ORDER BY r._batch_id DESC"""
    ).fetchall()
    return Backlog([(int(b), int(n), int(done)) for b, n, done in found])


def read_rows(
    con: duckdb.DuckDBPyConnection, s: Settings, chosen: list[tuple[int, int, bool]]
) -> pl.DataFrame:
    """The chosen rows' batch, key, event time and features. Whole batches are read as they are; the
    others without the rows already scored, newest event times first."""
    key, et = row_key(s)[0], s.columns.event_time
    names = list(dict.fromkeys(["_batch_id", key, et, *s.feature_names]))
    cols = ", ".join(f"r.{quote(c)}" for c in names)
    frames = []
    whole = [str(b) for b, _, is_whole in chosen if is_whole]
    if whole:
        frames.append(
            con.sql(f"SELECT {cols} FROM raw_deltas r WHERE r._batch_id IN ({', '.join(whole)})").pl()
        )
    rest = [(b, take) for b, take, is_whole in chosen if not is_whole]
    if rest:
        q = quote(key)
        frames.append(
            con.sql(
                f"SELECT {cols} FROM raw_deltas r WHERE r._batch_id IN ({', '.join(str(b) for b, _ in rest)}) "
                f"AND NOT EXISTS (SELECT 1 FROM predictions p WHERE p.role = '{ROLE_CHAMPION}' "
                f"AND p._batch_id = r._batch_id AND p.{q} = r.{q}) "
                f"ORDER BY r._batch_id DESC, r.{quote(et)} DESC LIMIT {sum(t for _, t in rest)}"
            ).pl()
        )
    if not frames:
        return pl.DataFrame(schema={n: pl.Int64 for n in names[:1]})
    frame = pl.concat(frames) if len(frames) > 1 else frames[0]
    if not s.columns.row_id:  # rows equal in every value share their key: one prediction for them
        frame = frame.unique(subset=["_batch_id", key], keep="first", maintain_order=True)
    return frame


def write(
    con: duckdb.DuckDBPyConnection,
    s: Settings,
    frame: pl.DataFrame,
    scores: np.ndarray,
    role: str,
    version: str,
    now: datetime,
    run_id: str,
) -> None:
    """Append one model's scores of `frame`'s rows, with the decision at [decision_threshold]."""
    key, et = quote(row_key(s)[0]), quote(s.columns.event_time)
    scored = frame.select("_batch_id", row_key(s)[0], s.columns.event_time).with_columns(
        pl.Series("score", scores, dtype=pl.Float64)
    )
    con.register("scored_rows", scored.to_arrow())
    try:
        con.execute(
            f"INSERT INTO predictions (_batch_id, {key}, {et}, role, model_version, score, decision, scored_at, "
            f"run_id) SELECT _batch_id, {key}, {et}, ?, ?, score, score >= ?, ?, ? FROM scored_rows",
            [role, version, s.decision_threshold, now, run_id or None],
        )
    finally:
        con.unregister("scored_rows")
