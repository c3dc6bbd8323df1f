"""Uncertainty of paired metric differences: DeLong for ROC AUC, a vectorised paired bootstrap otherwise.

Both models are scored on the same rows, so their metrics are correlated; the interval of the
difference uses that pairing (much narrower than two independent intervals).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np


def normal() -> Any:
    """scipy's standard normal distribution, imported on first use: scipy.stats takes most of a second
    to import, and runs that never compare two models (an ingest run) import modules of the gate."""
    from scipy.stats import norm

    return norm


BOOTSTRAP_SEED = 20240611
BOOTSTRAP_EXACT_MAX_ROWS = 25_000  # above this many rows, the resample sums come from their normal law
BOOTSTRAP_NOTE = (
    f"Paired bootstrap with a fixed seed: on sets of up to {BOOTSTRAP_EXACT_MAX_ROWS:,} rows the rows are "
    "resampled with replacement; on larger sets the resampled sums are drawn from their normal "
    "large-sample law (same mean and covariance), which the row resampling converges to."
)


@dataclass(frozen=True)
class Interval:
    """A paired difference (challenger minus champion, in the metric's own direction) and its
    two-sided interval at `confidence`."""

    estimate: float
    low: float
    high: float
    confidence: float
    method: str

    @property
    def lower_is_finite(self) -> bool:
        return math.isfinite(self.low)


class SortedScores:
    """One model's scores on a set, sorted once: DeLong's components for the whole set or any slice of it
    are read off this one sort (a slice keeps its rows in score order), instead of sorting each slice."""

    def __init__(self, scores: np.ndarray) -> None:
        self.order = np.argsort(scores)  # the order among tied scores does not change a component
        self.sorted = np.asarray(scores)[self.order]

    def components(
        self, y: np.ndarray, mask: np.ndarray | None, n_pos: int, n_neg: int, out: np.ndarray
    ) -> float:
        """DeLong's structural components on the rows in `mask` (all rows when None), written into `out`
        at their row positions: for each positive, the share of negatives scored below it (ties count
        half); for each negative, the share of positives scored above it (ties count half). The rows are
        in score order, so running counts of each class per group of tied scores give them in a few
        linear passes (the same values as midranks). Returns the AUC."""
        if mask is None:
            rows, values = self.order, self.sorted
        else:
            keep = mask[self.order]
            rows, values = self.order[keep], self.sorted[keep]
        positive = y[rows]
        first = np.empty(len(values), dtype=bool)  # first row of each group of tied scores
        first[:1] = True
        np.not_equal(values[1:], values[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        group = np.cumsum(first) - 1
        pos_upto = np.cumsum(positive)  # positives up to and including each row
        pos_before = np.concatenate([[0], pos_upto[starts[1:] - 1]])  # per group: positives scored lower
        pos_in = np.diff(np.concatenate([pos_before, [n_pos]]))  # per group: tied positives
        neg_before = starts - pos_before
        neg_in = np.diff(np.concatenate([starts, [len(values)]])) - pos_in
        g_pos, g_neg = group[positive], group[~positive]
        v10 = (neg_before[g_pos] + 0.5 * neg_in[g_pos]) / n_neg
        out[rows[positive]] = v10
        out[rows[~positive]] = (n_pos - pos_before[g_neg] - 0.5 * pos_in[g_neg]) / n_pos
        return float(v10.mean())


@dataclass(frozen=True)
class DeLong:
    """Both models' ROC AUC on the same rows and the standard error of their difference."""

    challenger_auc: float
    champion_auc: float
    se: float


class PairedScores:
    """Labels and both models' scores on one set, each model sorted once, for DeLong on the whole set
    and on each of its slices."""

    def __init__(self, y: np.ndarray, challenger: np.ndarray, champion: np.ndarray) -> None:
        self.y = np.asarray(y).astype(bool)
        self.challenger = SortedScores(np.asarray(challenger))
        self.champion = SortedScores(np.asarray(champion))
        self._a = np.empty(len(self.y))  # components, by row, of the rows compared last
        self._b = np.empty(len(self.y))

    def delong(self, mask: np.ndarray | None = None) -> DeLong | None:
        """ROC AUC of both models and DeLong's paired standard error of AUC(challenger) - AUC(champion) on
        the rows in `mask` (all rows when None); None when a class has fewer than 2 rows."""
        y = self.y
        positives = y if mask is None else y & mask
        n_pos = int(positives.sum())
        n_neg = (len(y) if mask is None else int(mask.sum())) - n_pos
        if n_pos < 2 or n_neg < 2:
            return None
        auc_a = self.challenger.components(y, mask, n_pos, n_neg, self._a)
        auc_b = self.champion.components(y, mask, n_pos, n_neg, self._b)
        pos_rows = np.flatnonzero(positives)
        neg_rows = np.flatnonzero(~y if mask is None else ~y & mask)
        s10 = np.cov(np.vstack([self._a[pos_rows], self._b[pos_rows]]))
        s01 = np.cov(np.vstack([self._a[neg_rows], self._b[neg_rows]]))
        cov = s10 / n_pos + s01 / n_neg
        var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
        return DeLong(auc_a, auc_b, math.sqrt(max(var, 0.0)))


def delong(y: np.ndarray, challenger: np.ndarray, champion: np.ndarray) -> DeLong | None:
    """ROC AUC of both models and DeLong's paired standard error of AUC(challenger) - AUC(champion),
    in O(n log n); None when a class has fewer than 2 rows."""
    return PairedScores(y, challenger, champion).delong()


def delong_se(y: np.ndarray, challenger: np.ndarray, champion: np.ndarray) -> float | None:
    """Standard error of AUC(challenger) - AUC(champion) by DeLong (None when a class has < 2 rows)."""
    d = delong(y, challenger, champion)
    return None if d is None else d.se


def delong_difference(
    y: np.ndarray, challenger: np.ndarray, champion: np.ndarray, confidence: float
) -> Interval:
    """AUC(challenger) - AUC(champion) with DeLong's paired variance, as a two-sided interval."""
    d = delong(y, challenger, champion)
    if d is None:
        return Interval(math.nan, math.nan, math.nan, confidence, "delong")
    diff = d.challenger_auc - d.champion_auc
    half = float(normal().ppf(0.5 + confidence / 2)) * d.se
    return Interval(diff, diff - half, diff + half, confidence, "delong")


Metric = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class LinearMetric:
    """A metric that is a function of resample-weighted sums of per-row columns (everything here but
    ROC AUC): all resamples of all such metrics then come from one matrix product per chunk.

    Called as metric(y, p, w) with weights w of shape (resamples, rows), it returns one value per resample.
    """

    name: str
    threshold: float = 0.5
    bins: int = 10

    @property
    def column_key(self) -> tuple:
        """Metrics with the same key read the same per-row columns (precision, recall and F1 all read
        true positives, predicted positives and positives at one threshold), so those are built once."""
        if self.name in ("precision", "recall", "f1"):
            return ("counts", self.threshold)
        return (self.name, self.bins) if self.name == "calibration_error" else (self.name,)

    def columns(self, y: np.ndarray, p: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float32)
        p = np.asarray(p, dtype=np.float32)
        if self.name == "log_loss":
            q = np.clip(p, 1e-7, 1 - 1e-7)
            return (-(y * np.log(q) + (1 - y) * np.log(1 - q)))[:, None]
        if self.name == "brier":
            return ((p - y) ** 2)[:, None]
        if self.name == "calibration_error":
            idx = np.minimum((p * self.bins).astype(int), self.bins - 1)
            out = np.zeros((len(p), self.bins), dtype=np.float32)
            out[np.arange(len(p)), idx] = p - y
            return out
        pred = (p >= self.threshold).astype(np.float32)
        return np.stack([pred * y, pred, y], axis=1)  # true positives, predicted positives, positives

    def combine(self, sums: np.ndarray, weight: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.name in ("log_loss", "brier"):
                return sums[:, 0] / weight
            if self.name == "calibration_error":
                return np.abs(sums).sum(axis=1) / weight
            tp, predicted, positives = sums[:, 0], sums[:, 1], sums[:, 2]
            if self.name == "precision":
                return np.where(predicted > 0, tp / predicted, 0.0)
            if self.name == "recall":
                return np.where(positives > 0, tp / positives, 0.0)
            return np.where(predicted + positives > 0, 2 * tp / (predicted + positives), 0.0)  # f1

    def __call__(self, y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
        w = np.asarray(w, dtype=np.float32)
        return self.combine(w @ self.columns(y, p), w.sum(axis=1))


@dataclass(frozen=True)
class PairedRequest:
    """One paired difference to bootstrap: metric(y, challenger) - metric(y, champion), times `sign`
    (+1 when higher is better), on the rows in `mask` (all n rows when None; then y and the scores are
    those rows only)."""

    metric: Metric
    y: np.ndarray
    challenger: np.ndarray
    champion: np.ndarray
    sign: float
    mask: np.ndarray | None = None


class _Columns:
    """The per-row columns of one group of requests, each distinct column block built once."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.blocks: list[np.ndarray] = []
        self.width = 0
        self._offsets: dict[tuple, int] = {}

    def add(self, key: tuple, block: np.ndarray, mask: np.ndarray | None) -> int:
        """Offset of `block` (rows of `mask`, or all n rows) among the group's columns."""
        if key not in self._offsets:
            if mask is not None:  # the slice's rows scattered into full-length columns, zero elsewhere
                full = np.zeros((self.n, block.shape[1]), dtype=np.float32)
                full[mask] = block
                block = full
            self._offsets[key] = self.width
            self.blocks.append(block)
            self.width += block.shape[1]
        return self._offsets[key]


def bootstrap_differences(
    n: int,
    requests: dict[str, PairedRequest],
    *,
    resamples: int,
    seed: int = BOOTSTRAP_SEED,
    exact_max_rows: int = BOOTSTRAP_EXACT_MAX_ROWS,
) -> dict[str, np.ndarray]:
    """Paired bootstrap of several metric differences over the same resamples of n rows.

    Every request sees the same resample weights (how often each row was drawn, with replacement); the
    per-row columns of all requests are stacked, each distinct column built once (precision, recall and
    F1 share theirs, and every request on the same rows shares one weight column), so that all
    resamples cost a few matrix products. A request over more than `exact_max_rows` rows, all of them
    (not a slice), whose summed columns are all far from zero, has its resample sums drawn from their
    normal large-sample law instead (see _normal_resample_sums), which costs one pass over the rows;
    slices and sparse counts (few predicted positives, say) are always resampled (see
    _exact_resample_sums). Deterministic for a given seed. Returns, per request, one difference per
    resample.
    """
    if n == 0 or resamples < 2 or not requests:
        return {k: np.array([]) for k in requests}
    groups: dict[bool, tuple[_Columns, dict[str, tuple]]] = {
        True: (_Columns(n), {}),
        False: (_Columns(n), {}),
    }
    built: dict[tuple, np.ndarray] = {}

    def columns_of(metric: LinearMetric, y: np.ndarray, p: np.ndarray) -> tuple[tuple, np.ndarray]:
        key = (metric.column_key, id(y), id(p))  # the arrays outlive this call: ids stay unique
        if key not in built:
            built[key] = metric.columns(y, p)
        return key, built[key]

    for key, r in requests.items():
        metric = r.metric if isinstance(r.metric, LinearMetric) else None
        if metric is None:
            raise TypeError(f"bootstrap needs a LinearMetric, got {r.metric!r}")
        (a_key, a), (b_key, b) = columns_of(metric, r.y, r.challenger), columns_of(metric, r.y, r.champion)
        normal = r.mask is None and n > exact_max_rows and _dense(metric, a, b)
        columns, layout = groups[normal]
        rows = id(r.mask)  # requests on the same rows (the same mask, or all rows) share a weight column
        layout[key] = (
            columns.add((rows, *a_key), a, r.mask),
            columns.add((rows, *b_key), b, r.mask),
            columns.add(("weight", rows), np.ones((len(r.y), 1), dtype=np.float32), r.mask),
            a.shape[1],
            metric,
            r.sign,
        )
    out: dict[str, list[np.ndarray]] = {k: [] for k in requests}
    for normal, (columns, layout) in groups.items():
        if not layout:
            continue
        stacked = np.ascontiguousarray(np.concatenate(columns.blocks, axis=1))
        sum_draws: Iterable[np.ndarray] = (
            [_normal_resample_sums(stacked, resamples, seed)]
            if normal
            else _exact_resample_sums(stacked, resamples, seed)
        )
        for sums in sum_draws:
            for key, (ch_at, cp_at, weight_at, width, metric, sign) in layout.items():
                weight = sums[:, weight_at]
                ch = metric.combine(sums[:, ch_at : ch_at + width], weight)
                cp = metric.combine(sums[:, cp_at : cp_at + width], weight)
                out[key].append(sign * (ch - cp))
    return {k: np.concatenate(v) for k, v in out.items()}


NORMAL_MIN_COUNT = 1000  # counts (true, predicted positives) below this are resampled, not drawn normal


def _dense(metric: LinearMetric, a: np.ndarray, b: np.ndarray) -> bool:
    """Whether the normal law of the resample sums is safe for this metric: counts (precision, recall,
    F1) must be large, so that a normal draw cannot go near zero or below."""
    if metric.name not in ("precision", "recall", "f1"):
        return True
    return bool(min(a.sum(axis=0).min(), b.sum(axis=0).min()) >= NORMAL_MIN_COUNT)


def _exact_resample_sums(columns: np.ndarray, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Column sums over `resamples` resamples of the n rows drawn with replacement.

    Only rows with a non-zero value in some column move the sums, and a column of ones (all rows'
    weight) always sums to n. So each resample draws how many of its n draws land on those rows
    (binomial), then which of them (uniform): together exactly the row counts of drawing n rows with
    replacement, restricted to those rows, at a cost that follows their number rather than n. In chunks
    that keep near 4M weights in memory; one matrix product per chunk."""
    n = len(columns)
    constant = np.all(columns == 1.0, axis=0)
    support = np.flatnonzero(np.any(columns[:, ~constant] != 0, axis=1))
    values = columns[support]
    m = max(len(support), 1)
    chunk = max(1, min(resamples, 4_000_000 // m))
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        rng = np.random.default_rng([seed, start])
        landed = rng.binomial(n, len(support) / n, size=k)
        w = np.zeros((k, len(support)), dtype=np.float32)
        for i in range(k):
            w[i] = np.bincount(rng.integers(0, m, size=landed[i]), minlength=len(support))
        sums = w @ values
        sums[:, constant] = n
        yield sums


def _normal_resample_sums(columns: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The resample column sums drawn from their large-sample law instead of by resampling rows.

    Drawing n rows with replacement makes the column sums multinomial sums, with mean n * mean(rows)
    and covariance n * cov(rows) (population covariance); by the central limit theorem they are
    normal for large n, which is where the bootstrap's own distribution converges. Costs one pass
    over the rows (O(n * columns^2)) instead of O(resamples * n * columns).
    """
    n, c = columns.shape
    mean = np.zeros(c)
    cross = np.zeros((c, c))
    for start in range(0, n, 16_384):  # float64 accumulation over small blocks: little extra memory
        block = columns[start : start + 16_384].astype(np.float64)
        mean += block.sum(axis=0)
        cross += block.T @ block
    mean /= n
    cov = cross / n - np.outer(mean, mean)
    values, vectors = np.linalg.eigh((cov + cov.T) / 2)
    root = vectors * np.sqrt(np.clip(values, 0.0, None))  # cov = root @ root.T
    z = np.random.default_rng([seed, 0]).standard_normal((resamples, c))
    return n * mean + math.sqrt(n) * (z @ root.T)


def weighted_metric(name: str, threshold: float) -> LinearMetric:
    """The resample-weighted version of a metric by its config name (ROC AUC uses DeLong instead)."""
    if name not in ("log_loss", "brier", "calibration_error", "precision", "recall", "f1"):
        raise ValueError(f"no resample-weighted version of {name!r}")
    return LinearMetric(name, threshold)


def as_probabilities(p: np.ndarray) -> np.ndarray:
    """Scores made usable as probabilities: NaN -> 0.5, clipped to [0, 1] (for metrics only)."""
    p = np.asarray(p, dtype=np.float64)
    if np.all(np.isfinite(p)) and (len(p) == 0 or (p.min() >= 0 and p.max() <= 1)):
        return p
    return np.clip(np.nan_to_num(p, nan=0.5, posinf=1.0, neginf=0.0), 0.0, 1.0)


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    if len(y) == 0:
        return math.nan
    idx = np.minimum((p * bins).astype(int), bins - 1)
    counts = np.bincount(idx, minlength=bins)
    sum_p = np.bincount(idx, weights=p, minlength=bins)
    sum_y = np.bincount(idx, weights=y, minlength=bins)
    mask = counts > 0
    return float(np.sum(np.abs(sum_p[mask] - sum_y[mask])) / len(y))
