"""Per-batch evidence: is a landed batch consistent with the champion, and may it be trained on?

Decay and poison look alike to the labels of one batch: the champion does worse on both. What tells
them apart is persistence. A real shift continues in the next batch; a poisoned batch does not, and its
labels disagree with the champion far beyond the champion's own batch-to-batch spread. So each batch is
judged once, when it lands, by the champion then in force:

- `normal`: the champion's primary metric on its labelled rows is within the expected range;
- `unjudged`: too few labelled rows ([holdback] min_rows), one class only, or no champion yet; a batch
  that landed without its labels is judged again once enough of them have arrived (late labels);
- `suspect`: worse than the reference by more than max(z * spread, min_drop): held back from training
  windows, golden sets and the gate's holdout until the next judged batch decides;
- `confirmed`: a suspect whose next judged batch is off too (a shift): trained on again, and the
  champion's reference restarts from it;
- `refuted`: a suspect whose next judged batch is back in range: excluded for good (a ledger row
  `batch_excluded` and an alert), until a person releases it;
- `released` / `excluded`: a person's decision (`ct-assets batch release|exclude B --reason ...`).

The reference is the median of the champion's metric on its latest judged batches since its last
confirmed shift ([holdback] history of them), its spread their standard deviation, never below the
batch's own sampling error; with fewer than three such batches, the champion's validation figure on
the recent holdout, with twice the sampling error. Every decision is a row of `batch_decisions`
(append-only); a batch's status is its latest row. Decay still triggers training; it never loosens
the gate, and evidence never lets a batch in that its successor refutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np

from ct_assets.config import LOWER_IS_BETTER, Settings
from ct_assets.core.modeling.metrics import metric_value
from ct_assets.errors import RegistryError
from ct_assets.store.sql import fetch_one, next_id

HELD = ("suspect", "refuted", "excluded")  # statuses whose batch is not trained on
INCLUDED = ("normal", "confirmed", "released")  # statuses that feed the champion's reference
PERSON_ACTIONS = {"release": "released", "exclude": "excluded"}
BOOTSTRAP_RESAMPLES = 60
BOOTSTRAP_SEED = 7


@dataclass(frozen=True)
class Decision:
    """One row of batch_decisions."""

    batch_id: int
    status: str
    champion: str | None
    rows_labelled: int
    value: float | None
    reference: float | None
    spread: float | None
    reason: str


def held_batches(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Batches not to train on now: their latest decision is suspect, refuted or excluded."""
    rows = con.execute(
        "SELECT batch_id FROM (SELECT batch_id, status, row_number() OVER (PARTITION BY batch_id "
        "ORDER BY decision_id DESC) AS rk FROM batch_decisions) WHERE rk = 1 AND status IN "
        f"({', '.join(repr(s) for s in HELD)}) ORDER BY batch_id"
    ).fetchall()
    return [int(r[0]) for r in rows]


def latest(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Every judged batch with its latest decision, newest first (for status and the CLI)."""
    rows = con.execute(
        "SELECT batch_id, status, champion_version, rows_labelled, value, reference, spread, reason, actor, "
        "recorded_at FROM (SELECT *, row_number() OVER (PARTITION BY batch_id ORDER BY decision_id DESC) AS rk "
        "FROM batch_decisions) WHERE rk = 1 ORDER BY batch_id DESC"
    ).fetchall()
    keys = (
        "batch_id",
        "status",
        "champion",
        "rows_labelled",
        "value",
        "reference",
        "spread",
        "reason",
        "actor",
    )
    return [{**dict(zip(keys, r[:9], strict=True)), "recorded_at": str(r[9])} for r in rows]


def decided(con: duckdb.DuckDBPyConnection) -> dict[int, tuple[str, int]]:
    """Every batch with a decision: its latest status and the labelled rows it was decided on."""
    rows = con.execute(
        "SELECT batch_id, status, rows_labelled FROM (SELECT *, row_number() OVER (PARTITION BY batch_id "
        "ORDER BY decision_id DESC) AS rk FROM batch_decisions) WHERE rk = 1"
    ).fetchall()
    return {int(b): (status, int(n or 0)) for b, status, n in rows}


def to_judge(
    settings: Settings, labelled: dict[int, int], decisions: dict[int, tuple[str, int]]
) -> list[int]:
    """Batches to score now, from their labelled rows among the fresh ones: those never decided on, and
    those left `unjudged` whose labels have since arrived (late labels) in number enough to judge them.
    A batch is otherwise judged once."""
    out = []
    for batch, n in sorted(labelled.items()):
        status, before = decisions.get(batch, ("", -1))
        if before < 0 or (status == "unjudged" and n > before and n >= settings.holdback.min_rows):
            out.append(batch)
    return out


def record(
    con: duckdb.DuckDBPyConnection,
    d: Decision,
    *,
    metric: str,
    now: datetime,
    actor: str | None = None,
    run_id: str | None = None,
) -> None:
    """Append one decision (caller holds the writer lock)."""
    con.execute(
        "INSERT INTO batch_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            next_id(con, "batch_decisions", "decision_id"),
            now,
            d.batch_id,
            d.status,
            d.champion,
            d.rows_labelled,
            metric,
            d.value,
            d.reference,
            d.spread,
            d.reason,
            actor,
            run_id,
        ],
    )


@dataclass
class _Reference:
    value: float
    spread: float  # batch-to-batch spread of the champion's metric (before the batch's own sampling error)
    source: str
    few: bool  # too few batches for a spread: twice the batch's own sampling error stands in for it


def _reference(
    con: duckdb.DuckDBPyConnection, settings: Settings, champion: str, validation_value: float | None
) -> _Reference | None:
    """The champion's expected metric on a new batch, and how much it varies from batch to batch: its
    latest judged batches since the last confirmed shift (inclusive), else its validation figure."""
    h = settings.holdback
    rows = con.execute(
        """SELECT value, status FROM (
               SELECT batch_id, value, status, row_number() OVER (PARTITION BY batch_id ORDER BY decision_id DESC) AS rk
               FROM batch_decisions WHERE champion_version = ? AND value IS NOT NULL) WHERE rk = 1
           ORDER BY batch_id DESC""",
        [champion],
    ).fetchall()
    values: list[float] = []
    shifted = False
    for value, status in rows:  # newest first, back to the last confirmed shift (inclusive)
        if status in INCLUDED:
            values.append(float(value))
        if status == "confirmed":
            shifted = True
            break
        if len(values) >= h.history:
            break
    if len(values) >= 3:
        median = float(np.median(values))
        return _Reference(median, float(np.std(values, ddof=1)), f"median of {len(values)} batches", False)
    if shifted:  # the level moved: the reference restarts from the batches of the confirmed shift
        return _Reference(
            float(np.median(values)), 0.0, f"median of {len(values)} batches since the shift", True
        )
    if validation_value is not None and math.isfinite(validation_value):
        return _Reference(float(validation_value), 0.0, "its validation figure", True)
    return None


def sampling_error(metric: str, y: np.ndarray, p: np.ndarray, threshold: float) -> float:
    """Standard error of the metric on these rows: Hanley and McNeil for ROC AUC, else a small bootstrap."""
    if metric == "roc_auc":
        n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
        a = metric_value(metric, y, p, threshold)
        if not n_pos or not n_neg or not math.isfinite(a):
            return math.nan
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
        return math.sqrt(max(var, 0.0))
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = [
        metric_value(metric, y[i], p[i], threshold)
        for i in rng.integers(0, len(y), (BOOTSTRAP_RESAMPLES, len(y)))
    ]
    return float(np.nanstd(draws, ddof=1))


@dataclass(frozen=True)
class BatchScore:
    """The champion's metric on one batch's labelled rows, with its sampling error."""

    batch_id: int
    rows_labelled: int
    value: float  # NaN when it cannot be computed (one class)
    error: float


def score_batch(settings: Settings, batch_id: int, y: np.ndarray, p: np.ndarray) -> BatchScore:
    metric, thr = settings.primary_metric, settings.decision_threshold
    if len(y) < settings.holdback.min_rows or y.min(initial=0) == y.max(initial=0):
        return BatchScore(batch_id, len(y), math.nan, math.nan)
    return BatchScore(batch_id, len(y), metric_value(metric, y, p, thr), sampling_error(metric, y, p, thr))


def _drop(metric: str, reference: float, value: float) -> float:
    """How much worse `value` is than `reference` (positive: worse), whatever the metric's direction."""
    return value - reference if metric in LOWER_IS_BETTER else reference - value


def judge(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    champion: str | None,
    validation_value: float | None,
    scores: list[BatchScore],
) -> list[Decision]:
    """Decisions for newly scored batches (in batch order), including the resolution of a pending suspect.
    Writes nothing: the caller records them (and raises the alerts) in its transaction."""
    h, metric = settings.holdback, settings.primary_metric
    pending = _pending_suspect(con)
    out: list[Decision] = []
    for s in sorted(scores, key=lambda x: x.batch_id):
        base = Decision(s.batch_id, "unjudged", champion, s.rows_labelled, None, None, None, "")
        if not h.enabled or champion is None or math.isnan(s.value):
            why = (
                "hold-back is off ([holdback] enabled)"
                if not h.enabled
                else (
                    "no champion yet"
                    if champion is None
                    else f"{s.rows_labelled} labelled rows or one class only (judged from {h.min_rows}, both classes)"
                )
            )
            out.append(_with(base, value=None if math.isnan(s.value) else s.value, reason=why))
            continue
        ref = _reference(con, settings, champion, validation_value)
        if ref is None:
            out.append(
                _with(base, value=s.value, reason="no reference yet (no validation figure, no judged batch)")
            )
            continue
        spread = 2 * s.error if ref.few else max(ref.spread, s.error)
        limit = max(h.z * spread, h.min_drop)
        drop = _drop(metric, ref.value, s.value)
        off = drop > limit
        text = (
            f"{metric} {s.value:.4f} on {s.rows_labelled} labelled rows; reference {ref.value:.4f} "
            f"({ref.source}), worse by {drop:+.4f}, limit {limit:.4f}"
        )
        if pending is not None:
            verdict = "confirmed" if off else "refuted"
            out.append(
                _with(
                    pending,
                    status=verdict,
                    reason=(
                        f"batch {s.batch_id} is off too: a shift, trained on"
                        if off
                        else f"batch {s.batch_id} is back in range: batch {pending.batch_id} stays excluded"
                    )
                    + f" ({text})",
                )
            )
            out.append(
                _with(
                    base,
                    status="confirmed" if off else "normal",
                    value=s.value,
                    reference=ref.value,
                    spread=spread,
                    reason=text,
                )
            )
            pending = None
            continue
        status = "suspect" if off else "normal"
        decision = _with(base, status=status, value=s.value, reference=ref.value, spread=spread, reason=text)
        out.append(decision)
        if off:
            pending = decision
    return out


def _with(d: Decision, **changes) -> Decision:
    return Decision(**{**d.__dict__, **changes})


def _pending_suspect(con: duckdb.DuckDBPyConnection) -> Decision | None:
    """The suspect batch still waiting for its successor's verdict, if any (the newest one)."""
    row = fetch_one(
        con,
        """SELECT batch_id, status, champion_version, rows_labelled, value, reference, spread, reason FROM (
               SELECT *, row_number() OVER (PARTITION BY batch_id ORDER BY decision_id DESC) AS rk
               FROM batch_decisions) WHERE rk = 1 AND status = 'suspect' ORDER BY batch_id DESC LIMIT 1""",
    )
    if row is None:
        return None
    return Decision(int(row[0]), row[1], row[2], int(row[3] or 0), row[4], row[5], row[6], row[7] or "")


def decide_by_person(
    con: duckdb.DuckDBPyConnection, batch_id: int, action: str, reason: str, *, who: str, now: datetime
) -> Decision:
    """A person's `release` (train on the batch again) or `exclude` (never train on it) of a landed batch,
    recorded as a decision (caller holds the writer lock and records the ledger row)."""
    if action not in PERSON_ACTIONS:
        raise RegistryError(f"unknown batch action {action!r}; expected one of {', '.join(PERSON_ACTIONS)}")
    if not reason.strip():
        raise RegistryError(f"batch {action} needs a non-empty --reason")
    known = fetch_one(
        con, "SELECT rows_labelled FROM ingest_log WHERE batch_id = ? AND status = 'ingested'", [batch_id]
    )
    if known is None:
        raise RegistryError(f"batch {batch_id} is not an ingested batch (see `ct-assets batch list`)")
    status = PERSON_ACTIONS[action]
    d = Decision(batch_id, status, None, int(known[0] or 0), None, None, None, f"{action} by {who}: {reason}")
    record(con, d, metric="", now=now, actor=who)
    return d
