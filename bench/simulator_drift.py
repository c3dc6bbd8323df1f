"""What each `ct-assets simulate --drift MODE` does to a model: the figures in the simulator's docstring.

Generates the stream of each mode (24 batches of 20,000 rows, the default config; the rows the delta
files hold, all labelled) and trains LightGBM with the configured parameters (2 threads) on chosen
batches, then reports ROC AUC on later batches and the features' PSI against the first batches.
`M(a-b)` is a model trained on batches a to b; `@k` its AUC on batch k.

    python bench/simulator_drift.py [--modes none,seasonal,sudden,gradual,poison] [--seeds 1,2,3,4,5]
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable
from functools import cache

import numpy as np
import polars as pl

from ct_assets.config import Settings, load_settings
from ct_assets.core.modeling.metrics import roc_auc
from ct_assets.core.modeling.model import TrainedModel, encode, train
from ct_assets.core.monitoring.signals import drift, feature_profile
from ct_assets.tools.simulator import SimulationOptions, generate_rows

ROWS = 20_000


@cache
def settings() -> Settings:
    os.environ.pop("CT_ASSETS_CONFIG", None)  # the default configuration
    return load_settings(None)


@cache
def batch(mode: str, b: int, seed: int) -> pl.DataFrame:
    opts = SimulationOptions(batches=1, rows=ROWS, seed=seed, drift=mode)
    return pl.DataFrame(generate_rows(np.random.default_rng([seed, b]), ROWS, opts, batch=b))


def fit(mode: str, first: int, last: int, seed: int) -> TrainedModel:
    params = {**settings().training, "num_threads": 2}
    return train(pl.concat([batch(mode, b, seed) for b in range(first, last + 1)]), settings(), params)


def auc(model: TrainedModel, mode: str, batches: range | list[int], seed: int) -> float:
    """Mean AUC of `model` over `batches`."""
    out = []
    for b in batches:
        f = batch(mode, b, seed)
        scores = model.booster.predict(encode(f, model.features), num_threads=2)
        out.append(roc_auc(f["label"].to_numpy(), scores))
    return float(np.mean(out))


def rate(mode: str, b: int, seed: int) -> float:
    return float(batch(mode, b, seed)["label"].mean())  # type: ignore[arg-type]


def common(mode: str, seed: int) -> dict[str, float]:
    recent = fit(mode, 21, 23, seed)
    history = fit(mode, 1, 23, seed)
    return {"M(21-23)@24": auc(recent, mode, [24], seed), "M(1-23)@24": auc(history, mode, [24], seed)}


def none(seed: int) -> dict[str, float]:
    return {"M(1-3)@4": auc(fit("none", 1, 3, seed), "none", [4], seed), **common("none", seed)}


def poison(seed: int) -> dict[str, float]:
    good = fit("poison", 9, 11, seed)
    return {
        "M(9-11)@12": auc(good, "poison", [12], seed),
        "M(9-11)@13": auc(good, "poison", [13], seed),
        "M(1-11)@13-24": auc(fit("poison", 1, 11, seed), "poison", range(13, 25), seed),
        "M(1-12)@13-24": auc(fit("poison", 1, 12, seed), "poison", range(13, 25), seed),
        "M(10-12)@13-24": auc(fit("poison", 10, 12, seed), "poison", range(13, 25), seed),
        "rate@11": rate("poison", 11, seed),
        "rate@12": rate("poison", 12, seed),
        **common("poison", seed),
    }


def sudden(seed: int) -> dict[str, float]:
    before = fit("sudden", 1, 11, seed)
    return {
        "M(1-10)@11": auc(fit("sudden", 1, 10, seed), "sudden", [11], seed),
        "M(1-11)@12-24": auc(before, "sudden", range(12, 25), seed),
        "M(12-14)@15-24": auc(fit("sudden", 12, 14, seed), "sudden", range(15, 25), seed),
        "rate@11": rate("sudden", 11, seed),
        "rate@12": rate("sudden", 12, seed),
        **common("sudden", seed),
    }


def seasonal(seed: int) -> dict[str, float]:
    spring = fit("seasonal", 1, 3, seed)
    rates = [rate("seasonal", b, seed) for b in range(1, 13)]
    return {
        "M(1-3)@4": auc(spring, "seasonal", [4], seed),
        "M(1-3)@10": auc(spring, "seasonal", [10], seed),
        "M(1-3)@16": auc(spring, "seasonal", [16], seed),
        "M(15-17)@24": auc(fit("seasonal", 15, 17, seed), "seasonal", [24], seed),
        "rate min": min(rates),
        "rate max": max(rates),
        **common("seasonal", seed),
    }


def gradual(seed: int) -> dict[str, float]:
    profile = feature_profile(pl.concat([batch("gradual", b, seed) for b in (1, 2, 3)]), settings())
    out: dict[str, float] = {}
    for b in (6, 12, 18, 24):
        worst = drift(profile, batch("gradual", b, seed), settings())[0]
        out[f"max PSI@{b}"] = worst.psi
    first_over = next(
        (b for b in range(4, 25) if drift(profile, batch("gradual", b, seed), settings())[0].psi > 0.2), 0
    )
    out["first batch PSI>0.2"] = float(first_over)
    out["M(1-3)@24"] = auc(fit("gradual", 1, 3, seed), "gradual", [24], seed)
    out["rate@1"] = rate("gradual", 1, seed)
    out["rate@24"] = rate("gradual", 24, seed)
    return {**out, **common("gradual", seed)}


MODES: dict[str, Callable[[int], dict[str, float]]] = {
    "none": none,
    "seasonal": seasonal,
    "sudden": sudden,
    "gradual": gradual,
    "poison": poison,
}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--seeds", default="1,2,3,4,5")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    for mode in args.modes.split(","):
        runs = [MODES[mode](seed) for seed in seeds]
        batch.cache_clear()
        print(f"## {mode} (seeds {args.seeds})")
        for key in runs[0]:
            values = [r[key] for r in runs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            print(
                f"  {key:<22} {statistics.mean(values):.3f} ± {sd:.3f}   [{', '.join(f'{v:.3f}' for v in values)}]"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
