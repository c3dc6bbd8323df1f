"""How often does the gate block a challenger that is as good as the champion, and how long does it take?

Builds its own synthetic warehouse in a temporary folder, trains a champion, then N challengers on
the same data with other seeds (LightGBM's bagging makes them differ by noise only), and runs the
gate of `validation_report` (ct_assets.core.gate.evaluate on the golden set and the recent holdout)
for each. Prints the false-block rate, which checks blocked, and the gate's time per run.

    python bench/false_blocks.py [--rows 600000] [--seeds 40]

The rate is printed with its exact (Clopper-Pearson) 95 % interval.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--rows", type=int, default=600_000, help="rows landed (the golden set takes 10%%, at most 50k)"
    )
    ap.add_argument("--seeds", type=int, default=40)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ct-false-blocks-"))
    os.chdir(work)
    os.environ.pop("CT_ASSETS_CONFIG", None)
    from ct_assets.common.clock import utc_now
    from ct_assets.config import load_settings
    from ct_assets.core import gate
    from ct_assets.core.datasets.golden import build_golden
    from ct_assets.core.datasets.training import define_training_dataset, read_split, record_dataset
    from ct_assets.core.gate.evaluation import eval_sets
    from ct_assets.core.ingest.ingest import ingest_landed_files
    from ct_assets.core.modeling import model as lgbm
    from ct_assets.store.warehouse import connect_writer, init_warehouse, transaction
    from ct_assets.tools.simulator import SimulationOptions, simulate

    s = load_settings()
    init_warehouse(s)
    batches = 6
    simulate(s, SimulationOptions(batches=batches, rows=args.rows // batches, seed=7))
    ingest_landed_files(s)
    now = utc_now()
    with connect_writer(s) as con, transaction(con):
        golden = build_golden(con, s, reason="bench", run_id="bench", now=now)  # from the golden reserve
        ds = define_training_dataset(con, s, golden.golden_hash)
        record_dataset(con, ds, run_id="bench", now=now)
        train = read_split(con, s, ds, "train")
    print(
        f"machine: {os.cpu_count()} cores; rows landed {args.rows}; golden {golden.rows}; "
        f"train {ds.n_train}; holdout {ds.n_holdout}",
        flush=True,
    )

    def fit(seed: int, version: str) -> lgbm.LoadedModel:
        trained = lgbm.train(train, s, {**s.training, "seed": seed})
        folder, _ = lgbm.save(trained, s.paths.models, version, {"data_hash": ds.dataset_hash})
        return lgbm.load(folder)

    champion = fit(int(s.training.get("seed", 42)), "v0001")
    verdicts: list[bool] = []
    blocked_by: Counter[str] = Counter()
    gate_seconds: list[float] = []
    deltas: list[tuple[float, float]] = []
    for i in range(args.seeds):
        challenger = fit(1000 + i, f"v{i + 2:04d}")
        with connect_writer(s) as con:
            sets = eval_sets(s, con, ds, challenger, champion).sets
        t = time.perf_counter()
        result = gate.evaluate(s, sets)
        gate_seconds.append(time.perf_counter() - t)
        verdicts.append(result.passed)
        blocked_by.update(result.failed_checks)
        golden_cmp = next(c for c in result.comparisons if c.set == "golden" and c.slice == "overall")
        deltas.append((golden_cmp.delta or 0.0, golden_cmp.low or 0.0))
        print(
            f"seed {1000 + i}: {'promoted' if result.passed else 'BLOCKED ' + ','.join(result.failed_checks)}; "
            f"golden AUC change {golden_cmp.delta:+.4f} (lower bound {golden_cmp.low:+.4f}); "
            f"{result.slice_confidence_note[:60]}...; gate {gate_seconds[-1]:.2f} s",
            flush=True,
        )
    blocks = verdicts.count(False)
    print()
    print("| figure | value |")
    print("| --- | --- |")
    print(f"| same-data, other-seed challengers | {args.seeds} |")
    low, high = clopper_pearson(blocks, args.seeds)
    print(
        f"| blocked (false blocks) | {blocks} ({blocks / args.seeds:.1%}; 95 % interval {low:.1%} to {high:.1%}) |"
    )
    print(f"| checks that blocked | {dict(blocked_by) or 'none'} |")
    print(f"| golden rows / holdout rows | {golden.rows} / {ds.n_holdout} |")
    print(
        f"| gate time, median (min-max) | {statistics.median(gate_seconds):.2f} s "
        f"({min(gate_seconds):.2f}-{max(gate_seconds):.2f}) |"
    )
    print(f"| golden AUC change, median abs | {statistics.median(abs(d) for d, _ in deltas):.4f} |")
    return 0


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The exact two-sided interval of a binomial proportion k/n."""
    from scipy.stats import beta

    alpha = 1 - level
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


if __name__ == "__main__":
    sys.exit(main())
