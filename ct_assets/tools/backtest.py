"""The backtest's plain logic: which delta files to replay, the scratch configuration, which model each
policy serves after each step, and every model's primary metric on the next step's labelled rows.

No Dagster here: `ct_assets.commands.backtest` runs the replay through the loop and hands this module
one `StepRecord` per landed file; `evaluate` then reads the scratch warehouse once, at the end, so each
step is scored on its next batch's labels as eventually known (late ones included).

Policies, all on the loop's own trigger timing (a model exists only where the loop trained one):

- `served`: the loop's champion after step k (what the gate and the registry decided);
- `never_retrain`: the loop's first champion, forever;
- `always_promote`: at every step where the loop trained a challenger, that model, promoted
  unconditionally. When the loop's training data set held batches back (`excluded_batches`), the
  baseline trains its own model on the same window without those exclusions;
- `every_n`: the always-promote model of steps N, 2N, ... (held in between; the first champion before
  step N).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ct_assets.config import LOWER_IS_BETTER, Paths, Settings
from ct_assets.core.datasets.training import DatasetInfo
from ct_assets.core.ingest.landing import is_ready_name
from ct_assets.errors import CtError, DataError
from ct_assets.store.warehouse import connect_reader
from ct_assets.tools.backtest_data import (
    Scorer,
    always_promote_models,
    batches_by_file,
    datasets,
    excluded_batches,
)

POLICIES = ("served", "always_promote", "never_retrain", "every_n")
BASELINES = POLICIES[1:]
OWN_MODEL_POLICIES = ("always_promote", "every_n")  # policies that use the baseline's own models
WAREHOUSE_FILE = "warehouse.duckdb"


# ---------------------------------------------------------------------------------------------- inputs


def delta_files(deltas_dir: Path) -> list[Path]:
    """The ready delta files (`*.parquet`, `*.csv`) of `deltas_dir`, in name order; at least two.

    Raises CtError (one line) for a missing folder, a folder without delta files, or a single file: each
    step is scored on the next file's rows, so one file gives nothing to score."""
    if not deltas_dir.exists():
        raise CtError(f"deltas folder {deltas_dir} does not exist")
    if not deltas_dir.is_dir():
        raise CtError(f"{deltas_dir} is not a folder (give the folder holding the delta files)")
    files = sorted(
        (p for p in deltas_dir.iterdir() if is_ready_name(p.name) and p.is_file()), key=lambda p: p.name
    )
    if not files:
        raise DataError(f"no delta files (*.parquet, *.csv) in {deltas_dir}")
    if len(files) < 2:
        raise DataError(
            f"only one delta file in {deltas_dir}: a backtest needs at least 2 "
            "(the model in force after each file is scored on the next file's rows)"
        )
    return files


def scratch_config(settings: Settings, root: Path) -> dict[str, Any]:
    """The effective configuration with every [paths] entry pointed into `root`: the same columns,
    thresholds, gate and training parameters, on a warehouse and folders of its own. Alerts stay in
    the scratch warehouse: the webhook is blanked, so a replayed block never pages anyone."""
    raw = copy.deepcopy(settings.raw)
    keys = set(raw.get("paths", {})) | {f.name for f in fields(Paths)}
    raw["paths"] = {k: str(root / (WAREHOUSE_FILE if k == "warehouse" else k)) for k in sorted(keys)}
    if "webhook_url" in raw.get("alerts", {}):
        raw["alerts"]["webhook_url"] = ""
    return raw


def wall_clock_notes(settings: Settings, files: int) -> list[str]:
    """What the replay cannot honour: rules that read the wall clock see a compressed timeline."""
    r = settings.retrain
    notes = []
    if r.cooldown_minutes > 0:
        notes.append(
            f"[retrain] cooldown_minutes = {r.cooldown_minutes:g} runs on the wall clock: in a replay "
            "that takes seconds per step it can hold back trainings the real loop would have run"
        )
    if r.max_trainings_per_day < files:
        notes.append(
            f"[retrain] max_trainings_per_day = {r.max_trainings_per_day} is below the {files} steps "
            "replayed today: the cap counts wall-clock days, not the data's"
        )
    return notes


# --------------------------------------------------------------------------------------------- records


@dataclass
class StepRecord:
    """What the loop did when the file of one step landed (from `run_cycle`'s outcome)."""

    step: int
    file: str
    verdict: str
    champion: str | None
    challenger: str | None
    failed_checks: list[str] = field(default_factory=list)
    trigger: str = ""
    ingest_run: str | None = None
    seconds: float = 0.0  # the whole cycle: ingest run, retrain decision, CT run
    ct_seconds: float | None = None  # the CT run alone (None: none ran)
    error: str | None = None

    @classmethod
    def from_cycle(cls, step: int, file: str, out: dict[str, Any], seconds: float) -> StepRecord:
        return cls(
            step=step,
            file=file,
            verdict=str(out.get("verdict")),
            champion=out.get("champion_version"),
            challenger=out.get("challenger_version"),
            failed_checks=list(out.get("failed_checks") or []),
            trigger=str((out.get("trigger") or {}).get("reason", "")),
            ingest_run=(out.get("runs") or {}).get("ingest"),
            seconds=round(seconds, 3),
            ct_seconds=out.get("ct_seconds"),
            error=out.get("error"),
        )

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepRecord:
        return cls(**data)


# -------------------------------------------------------------------------------------------- policies


def assign_policies(
    champions: list[str | None], challengers: list[str | None], every: int
) -> dict[str, list[str | None]]:
    """The model each policy has in force after each step (index i is step i + 1), by the loop's
    versions: `champions[i]` is the loop's champion after step i + 1, `challengers[i]` the model it
    trained at that step (None: none). Every baseline starts at the loop's first champion."""
    if every < 1:
        raise CtError(f"--every must be at least 1, got {every}")
    n = len(champions)
    first = next((i for i, c in enumerate(champions) if c is not None), None)
    out: dict[str, list[str | None]] = {p: [None] * n for p in POLICIES}
    out["served"] = list(champions)
    if first is None:
        return out
    latest: str | None = None
    for i in range(n):
        latest = challengers[i] or latest
        if i >= first:
            out["never_retrain"][i] = champions[first]
            out["always_promote"][i] = latest or champions[first]
    for i in range(first, n):
        last_turn = (i + 1) // every * every  # the newest step N, 2N, ... at or before this one
        out["every_n"][i] = (
            out["always_promote"][last_turn - 1] if last_turn - 1 >= first else champions[first]
        )
    return out


# ------------------------------------------------------------------------------------------ evaluation


@dataclass
class StepResult:
    """One step: the loop's record, the batch its file became, and each policy's model and metric on
    the next step's labelled rows (None where the step could not be scored; `skipped` says why)."""

    record: StepRecord
    batch_id: int | None
    next_batch_id: int | None
    next_rows: int
    versions: dict[str, str | None]
    metrics: dict[str, float | None]
    dataset_hash: str | None = None
    excluded_batches: list[int] = field(default_factory=list)
    skipped: str | None = None

    @property
    def scored(self) -> bool:
        return self.skipped is None

    def to_json(self) -> dict[str, Any]:
        r = self.record
        out: dict[str, Any] = {
            "step": r.step,
            "file": r.file,
            "batch_id": self.batch_id,
            "next_batch_id": self.next_batch_id,
            "next_rows": self.next_rows,
            "verdict": r.verdict,
            "champion_version": r.champion,
            "challenger_version": r.challenger,
            "dataset_hash": self.dataset_hash,
            "excluded_batches": self.excluded_batches,
            "failed_checks": r.failed_checks,
            "trigger": r.trigger,
            "seconds": r.seconds,
            "ct_seconds": r.ct_seconds,
            "error": r.error,
            "scored": self.scored,
            "skipped": self.skipped,
        }
        for p in POLICIES:
            out[p] = self.metrics.get(p)
            out[f"{p}_version"] = self.versions.get(p)
        return out


@dataclass
class Backtest:
    """The whole replay: one StepResult per file, and what the means are taken over."""

    metric: str
    every: int
    steps: list[StepResult]
    notes: list[str] = field(default_factory=list)
    own_models: list[str] = field(default_factory=list)  # challengers the always-promote baseline retrained

    @property
    def scored(self) -> list[StepResult]:
        return [s for s in self.steps if s.scored]

    def means(self) -> dict[str, float | None]:
        """Each policy's mean metric over the scored steps (the same steps for every policy)."""
        out: dict[str, float | None] = {}
        for p in POLICIES:
            values = [s.metrics[p] for s in self.scored]
            out[p] = float(np.mean(values)) if values else None  # type: ignore[arg-type]
        return out

    def best_baseline(self) -> tuple[str | None, float | None]:
        """The baseline with the best mean (highest, or lowest for a loss)."""
        means = {p: v for p, v in self.means().items() if p in BASELINES and v is not None}
        if not means:
            return None, None
        pick = min if self.metric in LOWER_IS_BETTER else max
        name = pick(means, key=lambda p: means[p])
        return name, means[name]

    def skipped(self) -> list[StepResult]:
        """Steps that have a next file but could not be scored (the last step has no next batch)."""
        return [s for s in self.steps[:-1] if not s.scored]

    def to_json(self) -> dict[str, Any]:
        means = self.means()
        best, best_mean = self.best_baseline()
        served = means["served"]
        gain = None
        if served is not None and best_mean is not None:
            gain = best_mean - served if self.metric in LOWER_IS_BETTER else served - best_mean
        return {
            "metric": self.metric,
            "every_n": self.every,
            "steps": len(self.scored),
            "files": len(self.steps),
            **{f"{p}_mean": means[p] for p in POLICIES},
            "best_baseline": best,
            "served_minus_best_baseline": gain,
            "skipped": len(self.skipped()),
            "skipped_steps": [{"step": s.record.step, "reason": s.skipped} for s in self.skipped()],
            "trainings": sum(1 for s in self.steps if s.record.challenger),
            "promotions": sum(1 for s in self.steps if s.record.verdict == "promoted"),
            "blocked": sum(1 for s in self.steps if s.record.verdict == "blocked"),
            "failed": sum(1 for s in self.steps if s.record.verdict == "failed"),
            "always_promote_retrained": self.own_models,
            "notes": self.notes,
            "per_step": [s.to_json() for s in self.steps],
        }


def evaluate(settings: Settings, records: list[StepRecord], *, every: int, baseline_dir: Path) -> Backtest:
    """Score every policy after every step on the next step's labelled rows, read now from the scratch
    warehouse of `settings` (labels as eventually known). `baseline_dir` receives the models the
    always-promote baseline has to train itself."""
    with connect_reader(settings, wait_seconds=60) as con:
        batches = batches_by_file(con, [r.file for r in records])
        loop_sets = datasets(con, [r.challenger for r in records if r.challenger])
        ap_paths, own = always_promote_models(con, settings, loop_sets, baseline_dir)
        versions = assign_policies([r.champion for r in records], [r.challenger for r in records], every)
        scorer = Scorer(settings, con, ap_paths)
        steps = [_score_step(i, records, batches, versions, loop_sets, scorer) for i in range(len(records))]
    return Backtest(settings.primary_metric, every, steps, own_models=own)


def _score_step(
    i: int,
    records: list[StepRecord],
    batches: list[tuple[int | None, str]],
    versions: dict[str, list[str | None]],
    datasets: dict[str, DatasetInfo],
    scorer: Scorer,
) -> StepResult:
    r = records[i]
    ds = datasets.get(r.challenger) if r.challenger else None
    out = StepResult(
        record=r,
        batch_id=batches[i][0],
        next_batch_id=batches[i + 1][0] if i + 1 < len(records) else None,
        next_rows=0,
        versions={p: versions[p][i] for p in POLICIES},
        metrics={p: None for p in POLICIES},
        dataset_hash=ds.dataset_hash if ds else None,
        excluded_batches=excluded_batches(ds) if ds else [],
    )
    out.skipped = _why_not_scored(i, records, batches, out)
    if out.skipped is None and out.next_batch_id is not None:
        frame, y = scorer.batch(out.next_batch_id)
        out.next_rows = frame.height
        if frame.height == 0:
            out.skipped = f"the next file's batch {out.next_batch_id} has no labelled rows"
        elif len(np.unique(y)) < 2 and scorer.settings.primary_metric == "roc_auc":
            out.skipped = f"the next file's batch {out.next_batch_id} holds one class only"
        else:
            for p in POLICIES:
                version = out.versions[p]
                assert version is not None  # every policy has a model once the loop has a champion
                out.metrics[p] = scorer.metric(version, out.next_batch_id, own=p in OWN_MODEL_POLICIES)
            if any(v is None or math.isnan(v) for v in out.metrics.values()):
                out.metrics = {p: None for p in POLICIES}
                out.skipped = "the metric is undefined on the next batch's rows"
    return out


def _why_not_scored(
    i: int, records: list[StepRecord], batches: list[tuple[int | None, str]], out: StepResult
) -> str | None:
    if i + 1 >= len(records):
        return "last file: no next batch to score on"
    if out.next_batch_id is None:
        return f"the next file {records[i + 1].file} became no batch ({batches[i + 1][1]})"
    if out.versions["served"] is None:
        return "no champion yet"
    return None
