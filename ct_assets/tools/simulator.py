"""A realistic synthetic stream for the default configuration: customer churn, one delta file per batch.

Numeric and categorical features, two slice columns (region, channel), unique row ids and event
times that advance batch by batch and across calls (the stream position is kept in the state folder)
and never lie in the future. Options add drift in the features and in the concept, drift confined to
one slice value, label noise, and rows whose label has not arrived yet.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from ct_assets.config import Settings
from ct_assets.errors import CtError

REGIONS = ["north", "south", "east", "west"]
CHANNELS = ["web", "store", "phone", "partner"]
PLANS = ["basic", "standard", "premium"]
STATE_FILE = "simulator.json"
DEFAULT_BATCH_SPAN = timedelta(hours=1)


@dataclass(frozen=True)
class SimulationOptions:
    batches: int
    rows: int
    seed: int = 0
    drift: float = 0.0  # 0 = none; 1 = strong shift of features and of the concept
    label_noise: float = 0.0  # share of labels flipped
    unlabelled: float = 0.02  # share of rows whose label has not arrived (null)
    drift_slice: str | None = None  # "column=value": concept drift only in that slice
    exploration: float = 0.0  # share of rows flagged as collected under a randomised policy
    file_format: str = "parquet"  # parquet | csv


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_rows(rng: np.random.Generator, n: int, opts: SimulationOptions) -> dict[str, np.ndarray]:
    """Features and labels for n rows (without ids and times)."""
    d = opts.drift
    region = rng.choice(REGIONS, size=n, p=[0.35, 0.25, 0.25, 0.15])
    channel = rng.choice(CHANNELS, size=n, p=[0.4, 0.3, 0.2, 0.1])
    plan = rng.choice(PLANS, size=n, p=[0.5, 0.35, 0.15])
    plan_idx = np.select([plan == "basic", plan == "standard"], [0, 1], 2)
    tenure = np.clip(np.round(rng.gamma(2.0, 14.0 * (1 - 0.4 * d), size=n)), 0, 600)
    spend = np.clip(np.round(rng.lognormal(3.4 + 0.45 * plan_idx + 0.2 * d, 0.5, size=n), 2), 0, 10000)
    calls = np.clip(rng.poisson(1.2 + 1.5 * d + 0.02 * np.maximum(0, 24 - tenure), size=n), 0, 200).astype(
        float
    )
    usage = np.clip(rng.normal(120 - 25 * d, 45, size=n), 0, 744).round(1)
    discount = rng.beta(2, 8, size=n).round(3)
    satisfaction = np.clip(np.round(rng.normal(3.6 - 0.3 * d - 0.15 * calls, 0.9)), 1, 5)

    region_effect = np.select(
        [region == "north", region == "south", region == "east"], [-0.2, 0.15, 0.0], 0.35
    )
    channel_effect = np.select(
        [channel == "web", channel == "store", channel == "phone"], [0.1, -0.25, 0.2], 0.0
    )
    calls_coef = 0.45 * (1 - 0.8 * d)
    logit = (
        -1.4
        + calls_coef * calls
        - 0.035 * np.minimum(tenure, 60)
        - 0.55 * (satisfaction - 3)
        + 1.1 * (spend > 90) * (plan == "basic")  # an interaction trees can find
        - 0.8 * discount
        - 0.004 * (usage - 120)
        + region_effect
        + channel_effect
        + 0.9 * d * (usage < 60)
    )
    if opts.drift_slice:
        col, _, value = opts.drift_slice.partition("=")
        where = {"region": region, "channel": channel, "plan": plan}.get(col)
        if where is None or not value:
            raise CtError(
                f"--drift-slice must be region=..., channel=... or plan=..., got {opts.drift_slice!r}"
            )
        # Concept drift confined to one slice: the signs of the main effects flip there.
        mask = where == value
        logit = np.where(mask, -logit - 2.0, logit)
    label = (rng.random(n) < _sigmoid(logit)).astype(np.int64)
    if opts.label_noise > 0:
        flip = rng.random(n) < opts.label_noise
        label = np.where(flip, 1 - label, label)
    usage = np.where(rng.random(n) < 0.03, np.nan, usage)
    satisfaction = np.where(rng.random(n) < 0.05, np.nan, satisfaction)
    return {
        "tenure_months": tenure,
        "monthly_spend": spend,
        "support_calls": calls,
        "usage_hours": usage,
        "discount_rate": discount,
        "satisfaction": satisfaction,
        "region": region,
        "channel": channel,
        "plan": plan,
        "label": label,
    }


def _load_state(path: Path) -> dict:
    if path.exists():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CtError(
                f"simulator state {path} is unreadable ({e}); delete it to restart the stream"
            ) from None
    return {"next_row_id": 1, "next_batch": 1, "last_event_time": None}


def simulate(settings: Settings, opts: SimulationOptions, *, now: datetime | None = None) -> list[Path]:
    """Write `opts.batches` delta files into the landing folder; return their paths in order."""
    if opts.batches < 1 or opts.rows < 1:
        raise CtError(f"--batches and --rows must be at least 1, got {opts.batches} and {opts.rows}")
    if not 0 <= opts.drift <= 5 or not 0 <= opts.label_noise <= 0.5 or not 0 <= opts.unlabelled < 1:
        raise CtError("--drift must be in [0, 5], --label-noise in [0, 0.5], unlabelled share in [0, 1)")
    if not 0 <= opts.exploration <= 1:
        raise CtError(f"--exploration must be a share in [0, 1], got {opts.exploration}")
    if opts.exploration > 0 and not settings.columns.exploration:
        raise CtError("--exploration needs a config whose [columns] exploration names the flag column")
    if opts.file_format not in ("parquet", "csv"):
        raise CtError(f"--format must be parquet or csv, got {opts.file_format!r}")
    cols = settings.columns
    if (
        cols.event_time != "event_time"
        or cols.label != "label"
        or cols.row_id != "row_id"
        or set(settings.feature_names)
        != {
            "tenure_months",
            "monthly_spend",
            "support_calls",
            "usage_hours",
            "discount_rate",
            "satisfaction",
            "region",
            "channel",
            "plan",
        }
    ):
        raise CtError("simulate writes the default schema only; the config in use names other columns")
    now = now or datetime.utcnow().replace(microsecond=0)
    state_path = settings.paths.state / STATE_FILE
    state = _load_state(state_path)
    last = datetime.fromisoformat(state["last_event_time"]) if state["last_event_time"] else None
    if last is None:
        start = now - DEFAULT_BATCH_SPAN * opts.batches
        span = DEFAULT_BATCH_SPAN
    else:
        start = min(last + timedelta(seconds=1), now)
        span = min(DEFAULT_BATCH_SPAN, (now - start) / opts.batches)
    settings.paths.landing.mkdir(parents=True, exist_ok=True)
    written = []
    for b in range(opts.batches):
        batch_no = state["next_batch"]
        rng = np.random.default_rng([opts.seed, batch_no])
        data = generate_rows(rng, opts.rows, opts)
        lo = start + span * b
        offsets = np.sort(rng.random(opts.rows)) * span.total_seconds()
        times = np.array([lo], dtype="datetime64[us]") + (offsets * 1e6).astype("timedelta64[us]")
        ids = np.arange(state["next_row_id"], state["next_row_id"] + opts.rows, dtype=np.int64)
        label = data.pop("label")
        unlabelled = rng.random(opts.rows) < opts.unlabelled
        frame = pl.DataFrame({"event_time": times, "row_id": ids, **data, "label": label}).with_columns(
            pl.when(pl.Series(unlabelled)).then(None).otherwise(pl.col("label")).alias("label")
        )
        if settings.columns.exploration:
            flags = (rng.random(opts.rows) < opts.exploration).astype(np.int64)
            frame = frame.with_columns(pl.Series(settings.columns.exploration, flags))
        name = f"delta_{batch_no:06d}_{lo:%Y%m%dT%H%M%S}.{opts.file_format}"
        final = settings.paths.landing / name
        part = settings.paths.landing / f".{name}.part"
        if opts.file_format == "parquet":
            frame.write_parquet(part)
        else:
            frame.write_csv(part)
        os.replace(part, final)  # the landing convention: visible only when complete
        written.append(final)
        state["next_row_id"] += opts.rows
        state["next_batch"] += 1
        state["last_event_time"] = str(times[-1].astype(datetime).isoformat())
    state_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_path.with_name(state_path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, state_path)
    return written
