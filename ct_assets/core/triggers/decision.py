"""When to retrain, and how fresh things are: cheap reads of the ingest log, never scans of raw rows.

The ingest log holds one row per landed file with its labelled-row count, the labels it attached to
rows landed earlier (late labels), and its event-time range, so "labelled rows newer than the champion's
training watermark" is a sum over a few hundred log rows, whatever the size of `raw_deltas`. A label
attached by a batch after the watermark is one the champion never trained on (store.labels), whichever
batch its row landed in.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta

import duckdb

from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.store.sql import fetch_one

TRIGGERS = ("rows", "decay", "drift", "staleness")


@dataclass(frozen=True)
class RetrainDecision:
    """Whether a CT run is due now, which trigger fired, and what every trigger says."""

    should_run: bool
    reason: str
    champion: str | None
    watermark_batch_id: int  # newest batch the champion was trained on (0: none)
    newest_batch_id: int
    rows_since_training: int
    threshold: int
    trigger: str | None = None  # the trigger that fired: rows | decay | drift | staleness
    due: list[str] = field(default_factory=list)  # every trigger that is due (the first one fires)
    waiting_until: datetime | None = None  # a due trigger waits for the cooldown or the daily cap
    signals: dict[str, str] = field(default_factory=dict)  # what each trigger says, for status

    def to_json(self) -> dict:
        out = asdict(self)
        out["waiting_until"] = (
            self.waiting_until.isoformat(sep=" ", timespec="seconds") if self.waiting_until else None
        )
        return out


def champion_watermark(con: duckdb.DuckDBPyConnection) -> tuple[str | None, int, datetime | None]:
    """(champion version, newest batch id and newest event time it was trained on)."""
    champ = registry.champion(con)
    if champ is None:
        return None, 0, None
    row = fetch_one(
        con, "SELECT watermark_batch_id, watermark_event_time FROM models WHERE version = ?", [champ]
    )
    if row is None:
        return champ, 0, None
    return champ, int(row[0] or 0), row[1]


@dataclass(frozen=True)
class TriggerInputs:
    """Everything the retrain decision reads from the warehouse: a few small rows, whatever its size.

    Kept apart from the decision so that the sensor can read them from a snapshot file (see
    `load_trigger_inputs`) instead of opening DuckDB on every tick.
    """

    champion: str | None
    watermark_batch_id: int
    # labelled rows the champion has not trained on: rows that landed labelled in batches after its
    # watermark, and labels attached (late) by those batches (summed from the ingest log)
    rows_since_training: int
    newest_batch_id: int
    champion_created_at: datetime | None
    recent_model_times: list[datetime]  # created_at of the newest models, newest first (cooldown, cap)
    score: dict | None  # the champion's latest score on fresh rows (decay and drift)

    def to_json(self) -> dict:
        out = asdict(self)
        out["champion_created_at"] = _iso(self.champion_created_at)
        out["recent_model_times"] = [_iso(t) for t in self.recent_model_times]
        return out

    @classmethod
    def from_json(cls, data: dict) -> TriggerInputs:
        return cls(
            champion=data["champion"],
            watermark_batch_id=int(data["watermark_batch_id"]),
            rows_since_training=int(data["rows_since_training"]),
            newest_batch_id=int(data["newest_batch_id"]),
            champion_created_at=_parse(data["champion_created_at"]),
            recent_model_times=[t for t in map(_parse, data["recent_model_times"]) if t is not None],
            score=data["score"],
        )


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


RECENT_MODELS = 1000  # enough created_at values for any sane [retrain] max_trainings_per_day


def read_trigger_inputs(con: duckdb.DuckDBPyConnection) -> TriggerInputs:
    """The decision's inputs, from the ingest log, the models table and the champion's latest score."""
    champ, watermark, _ = champion_watermark(con)
    row = fetch_one(
        con,
        "SELECT coalesce(sum(coalesce(rows_labelled, 0) + coalesce(labels_attached, 0)) FILTER (WHERE batch_id > ?), 0), "
        "coalesce(max(batch_id), 0) FROM ingest_log WHERE status = 'ingested'",
        [watermark],
    )
    rows_since, newest = (int(row[0]), int(row[1])) if row else (0, 0)
    created = None
    score = None
    if champ:
        rec = registry.model(con, champ)
        created = rec.created_at if rec else None
        latest = fetch_one(
            con,
            "SELECT decayed, decay_reason, drifted_features, drift_max_psi, drift_rows "
            "FROM champion_scores WHERE champion_version = ? ORDER BY score_id DESC LIMIT 1",
            [champ],
        )
        if latest is not None:
            score = {
                "decayed": bool(latest[0]),
                "decay_reason": latest[1] or "",
                "drifted": json.loads(latest[2] or "[]"),
                "max_psi": latest[3],
                "drift_rows": latest[4],
            }
    times = [
        r[0]
        for r in con.execute(
            "SELECT created_at FROM models ORDER BY created_at DESC LIMIT ?", [RECENT_MODELS]
        ).fetchall()
    ]
    return TriggerInputs(champ, watermark, rows_since, newest, created, times, score)


def retrain_decision(
    con: duckdb.DuckDBPyConnection, settings: Settings, now: datetime | None = None
) -> RetrainDecision:
    """The retrain decision from the warehouse as it is now (see `decide`)."""
    return decide(read_trigger_inputs(con), settings, now)


def decide(inputs: TriggerInputs, settings: Settings, now: datetime | None = None) -> RetrainDecision:
    """Decide from the trigger inputs (no I/O):

    - rows: labelled rows newer than the champion's watermark reach [retrain] min_new_rows;
    - decay: the champion's primary metric on fresh labels fell past its floor or its own validation
      figure minus the margin (judged by the champion_performance asset after each ingest);
    - drift: a feature's PSI passed [retrain] drift_psi, when drift_action = "retrain";
    - staleness: the champion is older than max_champion_age_hours and new labels exist.
    A due trigger waits while the cooldown runs or the daily cap is reached; it is not lost.
    """
    r = settings.retrain
    now = now or datetime.now(UTC).replace(tzinfo=None)
    champ, watermark = inputs.champion, inputs.watermark_batch_id
    rows_since, newest = inputs.rows_since_training, inputs.newest_batch_id
    threshold = r.min_new_rows
    who = f"champion {champ}'s training" if champ else "the start (no champion yet)"
    signals: dict[str, str] = {}
    due: list[str] = []
    signals["rows"] = f"{rows_since} labelled rows since {who}, threshold {threshold}"
    if newest and rows_since >= threshold:
        due.append("rows")
    score = inputs.score if champ else None
    if score is None:
        signals["decay"] = signals["drift"] = (
            "not judged yet (the champion has not been scored on fresh rows)"
        )
    else:
        max_psi, drifted = score["max_psi"], score["drifted"]
        signals["decay"] = ("DECAYED: " if score["decayed"] else "") + score["decay_reason"]
        psi_text = f"{max_psi:.3f}" if max_psi is not None else "n/a"
        signals["drift"] = (
            f"drifted: {', '.join(drifted)} (max PSI {psi_text} on {score['drift_rows']} rows); "
            if drifted
            else f"no feature past PSI {r.drift_psi} (max {psi_text}); "
        ) + f"drift_action = {r.drift_action}"
        if score["decayed"] and rows_since > 0:
            due.append("decay")
        if drifted and r.drift_action == "retrain" and rows_since > 0:
            due.append("drift")
    if champ and r.max_champion_age_hours > 0:
        created = inputs.champion_created_at
        age_h = (now - created).total_seconds() / 3600 if created else 0.0
        signals["staleness"] = (
            f"champion trained {age_h:.1f} h ago, fallback after {r.max_champion_age_hours:g} h"
            + ("" if rows_since else " (and needs new labels)")
        )
        if age_h > r.max_champion_age_hours and rows_since > 0:
            due.append("staleness")
    else:
        signals["staleness"] = "off" if champ else "no champion yet"

    base = RetrainDecision(
        False, "", champ, watermark, newest, rows_since, threshold, None, due, None, signals
    )
    if newest == 0:
        return replace(base, reason="no data ingested yet")
    if not due:
        return replace(base, reason=f"no trigger due: {signals['rows']}")
    trigger = due[0]
    last = inputs.recent_model_times[0] if inputs.recent_model_times else None
    in_day_times = [t for t in inputs.recent_model_times if t > now - timedelta(hours=24)]
    in_day = len(in_day_times)
    if last is not None and r.cooldown_minutes > 0 and now < last + timedelta(minutes=r.cooldown_minutes):
        until = last + timedelta(minutes=r.cooldown_minutes)
        return replace(
            base,
            reason=f"{trigger} trigger due ({signals[trigger]}); cooling down until "
            f"{until:%Y-%m-%d %H:%M:%S} ([retrain] cooldown_minutes {r.cooldown_minutes:g})",
            waiting_until=until,
        )
    if in_day >= r.max_trainings_per_day:
        until = min(in_day_times) + timedelta(hours=24)
        return replace(
            base,
            reason=f"{trigger} trigger due ({signals[trigger]}); {in_day} trainings in 24 h reached "
            f"[retrain] max_trainings_per_day, next slot at {until:%Y-%m-%d %H:%M:%S}",
            waiting_until=until,
        )
    return replace(base, should_run=True, trigger=trigger, reason=f"{trigger}: {signals[trigger]}")
