"""A realistic synthetic stream for the default configuration: customer churn, one delta file per batch.

Numeric and categorical features, two slice columns (region, channel), unique row ids and event
times that advance batch by batch and across calls (the stream position, the next batch number
included, is kept in the state folder) and never lie in the future. Options add a static drift of
features and concept, drift confined to one slice value, label noise, rows whose label has not arrived
yet, and drift modes that unfold along the stream.

The churn probability is sigmoid(logit(x)); concept A (`_logit`) holds unless a mode says otherwise.
`--label-delay N` lands the labels of each batch's rows (or a share of them, `--late-share`) as a label
file N batches later (tools.simulator_labels).

`--drift` takes a number (a static shift of features and concept of that strength in every batch, 0 to
5, 1 is strong) or a mode. Modes follow the stream's batch number b (1 for its first delta, counted
across calls), so one call of 24 batches and 24 calls of one hold the same rows (only the event times
depend on when the calls ran); the same seed and options give byte-identical files. Every mode draws the
same random numbers as the stream without drift, so a mode's stream differs from it only in what the
mode changes:

- seasonal: angle a = 2π·((b-1) mod 12)/12; logit += 0.4·cos a + 0.8·(cos a·z_usage + sin a·z_spend),
  z_usage = (usage_hours-120)/45, z_spend = (log(1+monthly_spend)-3.7)/0.6: heavy users churn in
  batches 1, 13, ..., light users in 7, 19, high spenders in 4, 16, low spenders in 10, 22, and the
  positive rate swings between about 13 % and 21 %.
- sudden: from batch 12 on, concept B (`_changed_logit`) for good: usage and discount raise churn,
  tenure no longer protects, support calls count less, the spend interaction moves to premium plans,
  regions and channels reshuffle. Batches 1-11 are the stream without drift.
- gradual: with k = b-1, tenure's gamma scale ×exp(-0.015·k), log spend +0.01·k, usage +1.5·k hours,
  the web channel's share +0.005·k (up to +0.25, taken from store), values clipped to the config's
  ranges; the concept stays A.
- poison: exactly 60 % of batch 12's labels flipped, picked without replacement with weight
  agreement^4 (agreement = p for a 1, 1-p for a 0) from a random stream of their own: the flips hit the
  labels the features predict best, so the batch contradicts a good model. Every other batch is clean.

Calibration (bench/simulator_drift.py: 24 batches of 20,000 rows, default config, LightGBM with 2
threads, seeds 1-5, mean ± sd; M(i-j) is a model trained on batches i to j, @k its ROC AUC on batch k):

- none: M(1-3)@4 0.754 ± 0.002, M(21-23)@24 0.756 ± 0.003, M(1-23)@24 0.761 ± 0.004.
- seasonal: M(1-3)@4 0.748, @10 0.649 (six batches on), @16 0.747 (a year on); @24: M(21-23) 0.734, M(15-17) 0.639, M(1-23) 0.727.
- sudden: M(1-10)@11 0.756; M(1-11) on 12-24 0.608 ± 0.003 (-0.148); M(12-14) on 15-24 0.746; M(1-23)@24 0.720.
- gradual: max PSI against batches 1-3: 0.107 at 12, 0.263 at 18, 0.488 at 24 (over 0.2 from batch 16); @24: M(1-23) 0.753, M(1-3) 0.748.
- poison: M(9-11)@12 0.347 ± 0.002 (@13 0.754; positive rate 0.74 against 0.15); on 13-24: M(1-12) 0.760 against M(1-11) 0.761, M(10-12) 0.710.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from ct_assets.config import Settings
from ct_assets.errors import CtError
from ct_assets.tools import simulator_labels as late

REGIONS = ["north", "south", "east", "west"]
CHANNELS = ["web", "store", "phone", "partner"]
PLANS = ["basic", "standard", "premium"]
STATE_FILE = "simulator.json"
DEFAULT_BATCH_SPAN = timedelta(hours=1)

DRIFT_MODES = ("none", "seasonal", "sudden", "gradual", "poison")
SEASON_BATCHES = 12  # seasonal: batches per cycle ("a year" of monthly batches)
SEASON_RATE = 0.4  # seasonal: amplitude of the logit's intercept (the positive rate's swing)
SEASON_STRENGTH = 0.8  # seasonal: logit change per standard deviation of usage and of spend at the peak
CHANGE_BATCH = 12  # sudden: the first batch of the changed concept
GRADUAL_TENURE_RATE = 0.015  # gradual: tenure's scale shrinks by this share per batch (exponentially)
GRADUAL_SPEND_RATE = 0.01  # gradual: log monthly spend grows by this much per batch
GRADUAL_USAGE_RATE = 1.5  # gradual: usage hours grow by this much per batch
GRADUAL_WEB_RATE = 0.005  # gradual: the web channel's share grows by this much per batch (up to +0.25)
POISON_BATCH = 12  # poison: the batch whose labels are flipped
POISON_SHARE = 0.6  # poison: the share of that batch's labels flipped
POISON_TARGETING = 4.0  # poison: how strongly the flips pick the labels the features predict best
POISON_STREAM = 0x9015  # poison: a random stream of its own, apart from the rows' draws


@dataclass(frozen=True)
class SimulationOptions:
    batches: int
    rows: int
    seed: int = 0
    # A number: static shift of features and concept, 0 (none) to 1 (strong), the same in every batch.
    # A word: a drift mode along the stream's batch numbers (DRIFT_MODES; "none" is no drift).
    drift: float | str = 0.0
    label_noise: float = 0.0  # share of labels flipped
    unlabelled: float = 0.02  # share of rows whose label has not arrived (null)
    drift_slice: str | None = None  # "column=value": concept drift only in that slice
    exploration: float = 0.0  # share of rows flagged as collected under a randomised policy
    file_format: str = "parquet"  # parquet | csv
    label_delay: int = 0  # > 0: labels land as a label file this many batches after their rows
    late_share: float = 1.0  # ... for this share of the labelled rows (tools.simulator_labels)

    @property
    def drift_mode(self) -> str:
        """The drift mode ("none" when drift is a number)."""
        return self.drift if isinstance(self.drift, str) else "none"

    @property
    def drift_strength(self) -> float:
        """The static shift strength (0 when drift names a mode)."""
        return 0.0 if isinstance(self.drift, str) else float(self.drift)


def parse_drift(text: str) -> float | str:
    """`--drift` as given on the command line: a number is a static strength, anything else a mode name."""
    try:
        return float(text)
    except ValueError:
        return text.strip().lower()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def season_angle(batch: int) -> float:
    """The seasonal phase of a batch: 0 at batch 1, a full turn every SEASON_BATCHES batches. Taken modulo
    the period first, so that batch k and k + SEASON_BATCHES get the very same float."""
    return 2.0 * math.pi * ((batch - 1) % SEASON_BATCHES) / SEASON_BATCHES


def generate_rows(
    rng: np.random.Generator, n: int, opts: SimulationOptions, *, batch: int = 1
) -> dict[str, np.ndarray]:
    """Features and labels for n rows of stream batch `batch` (without ids and times).

    Every mode draws the same random numbers in the same order as a stream without drift, so the same
    seed gives the same rows up to what the mode changes (shifted features, labels of the changed concept,
    the flipped labels of the poisoned batch).
    """
    d = opts.drift_strength
    mode = opts.drift_mode
    step = batch - 1 if mode == "gradual" else 0  # covariate drift: linear in the batch index
    channel_p = _channel_mix(step)
    region = rng.choice(REGIONS, size=n, p=[0.35, 0.25, 0.25, 0.15])
    channel = rng.choice(CHANNELS, size=n, p=channel_p)
    plan = rng.choice(PLANS, size=n, p=[0.5, 0.35, 0.15])
    plan_idx = np.select([plan == "basic", plan == "standard"], [0, 1], 2)
    tenure_scale = 14.0 * (1 - 0.4 * d) * math.exp(-GRADUAL_TENURE_RATE * step)
    tenure = np.clip(np.round(rng.gamma(2.0, tenure_scale, size=n)), 0, 600)
    spend_mu = 3.4 + 0.45 * plan_idx + 0.2 * d + GRADUAL_SPEND_RATE * step
    spend = np.clip(np.round(rng.lognormal(spend_mu, 0.5, size=n), 2), 0, 10000)
    calls = np.clip(rng.poisson(1.2 + 1.5 * d + 0.02 * np.maximum(0, 24 - tenure), size=n), 0, 200).astype(
        float
    )
    usage = np.clip(rng.normal(120 - 25 * d + GRADUAL_USAGE_RATE * step, 45, size=n), 0, 744).round(1)
    discount = rng.beta(2, 8, size=n).round(3)
    satisfaction = np.clip(np.round(rng.normal(3.6 - 0.3 * d - 0.15 * calls, 0.9)), 1, 5)
    x = {
        "tenure_months": tenure,
        "monthly_spend": spend,
        "support_calls": calls,
        "usage_hours": usage,
        "discount_rate": discount,
        "satisfaction": satisfaction,
        "region": region,
        "channel": channel,
        "plan": plan,
    }
    changed = mode == "sudden" and batch >= CHANGE_BATCH
    logit = _changed_logit(x) if changed else _logit(x, d)
    if mode == "seasonal":
        logit = logit + _seasonal_term(x, batch)
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
    if mode == "poison" and batch == POISON_BATCH:
        label = _poisoned(label, _sigmoid(logit), np.random.default_rng([opts.seed, batch, POISON_STREAM]))
    usage = np.where(rng.random(n) < 0.03, np.nan, usage)
    satisfaction = np.where(rng.random(n) < 0.05, np.nan, satisfaction)
    return {**x, "usage_hours": usage, "satisfaction": satisfaction, "label": label}


def _channel_mix(step: int) -> list[float]:
    """Channel shares after `step` batches of gradual drift: web grows, store shrinks, linearly, bounded."""
    shift = min(GRADUAL_WEB_RATE * step, 0.25)
    return [0.4 + shift, 0.3 - shift, 0.2, 0.1]


def _logit(x: dict[str, np.ndarray], d: float) -> np.ndarray:
    """The churn model (concept A), with the static drift of strength d."""
    region, channel, plan = x["region"], x["channel"], x["plan"]
    region_effect = np.select(
        [region == "north", region == "south", region == "east"], [-0.2, 0.15, 0.0], 0.35
    )
    channel_effect = np.select(
        [channel == "web", channel == "store", channel == "phone"], [0.1, -0.25, 0.2], 0.0
    )
    calls_coef = 0.45 * (1 - 0.8 * d)
    return (
        -1.4
        + calls_coef * x["support_calls"]
        - 0.035 * np.minimum(x["tenure_months"], 60)
        - 0.55 * (x["satisfaction"] - 3)
        + 1.1 * (x["monthly_spend"] > 90) * (plan == "basic")  # an interaction trees can find
        - 0.8 * x["discount_rate"]
        - 0.004 * (x["usage_hours"] - 120)
        + region_effect
        + channel_effect
        + 0.9 * d * (x["usage_hours"] < 60)
    )


def _changed_logit(x: dict[str, np.ndarray]) -> np.ndarray:
    """The churn model after the sudden change (concept B): a competitor's offer takes heavy users and
    discount hunters; tenure no longer protects; support calls matter less; the spend interaction moves
    from basic to premium plans; regions and channels reshuffle."""
    region, channel, plan = x["region"], x["channel"], x["plan"]
    region_effect = np.select(
        [region == "north", region == "south", region == "east"], [0.35, -0.2, 0.15], 0.0
    )
    channel_effect = np.select(
        [channel == "web", channel == "store", channel == "phone"], [-0.2, 0.25, -0.1], 0.0
    )
    return (
        -2.5
        + 0.3 * x["support_calls"]
        - 0.7 * (x["satisfaction"] - 3)
        + 1.1 * (x["monthly_spend"] > 120) * (plan == "premium")
        + 1.5 * x["discount_rate"]
        + 0.012 * (x["usage_hours"] - 120)
        + region_effect
        + channel_effect
    )


def _poisoned(label: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`label` with exactly POISON_SHARE of its entries flipped, picked without replacement with weight
    agreement ** POISON_TARGETING (agreement: p for a 1, 1 - p for a 0), so that the flips hit the labels
    the features predict best, as a label-flipping attack does, and the batch contradicts a good model."""
    agreement = np.where(label == 1, p, 1.0 - p)
    weight = np.maximum(agreement, 1e-12) ** POISON_TARGETING
    keys = np.log(rng.random(len(label))) / weight  # Efraimidis-Spirakis: the k largest keys
    flip = np.argsort(-keys, kind="stable")[: round(POISON_SHARE * len(label))]
    out = label.copy()
    out[flip] = 1 - out[flip]
    return out


def _seasonal_term(x: dict[str, np.ndarray], batch: int) -> np.ndarray:
    """What the season adds to the logit: the positive rate follows cos(angle); heavy users churn in one
    season and light users half a year later (cos), high spenders and low spenders likewise (sin)."""
    angle = season_angle(batch)
    usage_z = (x["usage_hours"] - 120.0) / 45.0
    spend_z = (np.log1p(x["monthly_spend"]) - 3.7) / 0.6
    return SEASON_RATE * math.cos(angle) + SEASON_STRENGTH * (
        math.cos(angle) * usage_z + math.sin(angle) * spend_z
    )


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
    if isinstance(opts.drift, str) and opts.drift not in DRIFT_MODES:
        raise CtError(
            f"--drift must be a number in [0, 5] or one of {', '.join(DRIFT_MODES)}, got {opts.drift!r}"
        )
    if not 0 <= opts.drift_strength <= 5 or not 0 <= opts.label_noise <= 0.5 or not 0 <= opts.unlabelled < 1:
        raise CtError("--drift must be in [0, 5], --label-noise in [0, 0.5], unlabelled share in [0, 1)")
    if opts.seed < 0:
        raise CtError(f"--seed must be at least 0, got {opts.seed}")
    if not 0 <= opts.exploration <= 1:
        raise CtError(f"--exploration must be a share in [0, 1], got {opts.exploration}")
    if opts.exploration > 0 and not settings.columns.exploration:
        raise CtError("--exploration needs a config whose [columns] exploration names the flag column")
    if opts.file_format not in ("parquet", "csv"):
        raise CtError(f"--format must be parquet or csv, got {opts.file_format!r}")
    if opts.label_delay < 0 or not 0 <= opts.late_share <= 1:
        raise CtError(
            f"--label-delay must be at least 0 and --late-share in [0, 1], got {opts.label_delay} and "
            f"{opts.late_share}"
        )
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
        data = generate_rows(rng, opts.rows, opts, batch=batch_no)
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
        if opts.label_delay > 0:
            frame, labels = late.withhold(
                frame,
                settings,
                seed=opts.seed,
                batch=batch_no,
                share=opts.late_share,
                delay=span * opts.label_delay,
                now=now,
            )
            due = batch_no + opts.label_delay
            late.schedule(settings, state, labels, batch=batch_no, due=due, fmt=opts.file_format)
        name = f"delta_{batch_no:06d}_{lo:%Y%m%dT%H%M%S}.{opts.file_format}"
        final = settings.paths.landing / name
        part = settings.paths.landing / f".{name}.part"
        if opts.file_format == "parquet":
            frame.write_parquet(part)
        else:
            frame.write_csv(part)
        os.replace(part, final)  # the landing convention: visible only when complete
        written.append(final)
        written += late.land_due(settings, state, batch_no)
        state["next_row_id"] += opts.rows
        state["next_batch"] += 1
        state["last_event_time"] = str(times[-1].astype(datetime).isoformat())
    state_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_path.with_name(state_path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, state_path)
    return written
