"""The predictions section of bench/run.py: the champion's scoring inside an ingest run against its floor.

One project is built (a history already scored by a champion, a blocked challenger waiting for review,
and one delta landed); each measured run works on a fresh copy of it, in a process of its own:
- `without`: the ingest run without the predictions step (raw_deltas and champion_performance), as before;
- `champion`: the whole ingest run, shadow scoring off: the predictions step scores the delta's rows;
- `shadow`: the same with the blocked challenger shadow-scoring them too.
In the same process, right before the run (on the rows of the landed file) and right after it (on the
same rows read back from the warehouse), the floor: LightGBM's bare `predict` on those rows (the model
matrix built beforehand, not timed) plus an INSERT of the same prediction rows into a table of the same
layout on an open connection. The ratio is the predictions step (Dagster's own step time) over the mean
of the two floors that bracket it (this machine is shared: LightGBM's time moves by 10-20 % within
minutes). The shadow's cost is reported apart: its phases, and its step.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

VARIANTS = ("without", "champion", "shadow")
SHADOW_OFF = "[predictions]\nshadow = false\n"


def child_setup(delta_rows: int) -> dict[str, Any]:
    """Champion v0001 (the [training] defaults) and a blocked challenger v0002 trained on the history, the
    history scored, then one delta of `delta_rows` rows landed."""
    from ct_assets.common.clock import utc_now
    from ct_assets.config import load_settings
    from ct_assets.core import registry
    from ct_assets.core.modeling import model as lgbm
    from ct_assets.core.predictions.scoring import score_new_rows
    from ct_assets.store.schema import raw_delta_columns
    from ct_assets.store.sql import quote
    from ct_assets.store.warehouse import connect_writer
    from ct_assets.tools.simulator import SimulationOptions, simulate

    s = load_settings()
    names = ", ".join(quote(n) for n, _ in raw_delta_columns(s))
    with connect_writer(s) as con:
        newest, newest_time = con.execute(
            "SELECT max(_batch_id), max(event_time) FROM raw_deltas"
        ).fetchall()[0]
        train = con.sql(
            f"SELECT {names} FROM raw_deltas WHERE label IS NOT NULL ORDER BY event_time, row_id"
        ).pl()
    train = train.tail(200_000)
    trees = 0
    for version, params, action in (
        ("v0001", dict(s.training), "promoted"),
        ("v0002", {**s.training, "seed": 7, "num_iterations": 100}, "blocked"),
    ):
        trained = lgbm.train(train, s, params)
        _, card = lgbm.save(trained, s.paths.models, version, {})
        trees = trees or trained.booster.num_trees()
        with connect_writer(s) as con:
            registry.record_model(
                con,
                registry.ModelRecord(
                    version,
                    utc_now(),
                    "bench",
                    "bench",
                    params,
                    train.height,
                    0,
                    trained.seconds,
                    int(newest),
                    newest_time,
                    card["model_sha256"],
                    None,
                ),
            )
            after = version if action == "promoted" else "v0001"
            registry.record(con, action=action, version=version, champion_after=after, now=utc_now())
    history = score_new_rows(s)
    assert history.rows_remaining == 0 and history.shadow is not None and history.shadow.rows_scored == 0
    simulate(s, SimulationOptions(batches=1, rows=delta_rows, seed=11))
    return {"history_scored": history.rows_scored, "trees": trees}


def child_run(variant: str) -> dict[str, Any]:
    """One ingest run (through Dagster, in-process) of the landed delta, then the floor on its rows."""
    import dagster as dg

    from ct_assets.config import load_settings
    from ct_assets.core.ingest.quality import _batch_definition
    from ct_assets.definitions import defs

    s = load_settings()
    _batch_definition()  # GX's import and context: paid once per process, in every variant alike
    before = None
    if variant != "without":
        import polars as pl

        (landed,) = sorted(s.paths.landing.glob("*.parquet"))
        before = _floor(s, pl.read_parquet(landed).with_columns(pl.lit(0).alias("_batch_id")))
    selection = None
    if variant == "without":
        selection = [dg.AssetKey("raw_deltas"), dg.AssetKey("champion_performance")]
    instance = dg.DagsterInstance.get()
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    started = time.perf_counter()
    res = defs.resolve_job_def("ingest_job").execute_in_process(
        instance=instance, run_config=quiet, raise_on_error=False, asset_selection=selection
    )
    run_s = time.perf_counter() - started
    if not res.success:
        raise RuntimeError(f"the {variant} ingest run failed")
    steps = {
        st.step_key: st.end_time - st.start_time
        for st in instance.get_run_step_stats(res.run_id)
        if st.start_time and st.end_time
    }
    out: dict[str, Any] = {"variant": variant, "run_s": run_s, "steps_s": steps}
    if variant != "without":
        (mat,) = res.asset_materializations_for_node("predictions")
        meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
        out |= {
            "rows_scored": meta["rows_scored"],
            "shadow_rows_scored": meta.get("shadow_rows_scored", 0),
            "phases_s": dict(meta["seconds"]),
        }
        after = _floor(s, _scored_rows(s))
        assert before is not None and before["floor_rows"] == after["floor_rows"] == meta["rows_scored"]
        out |= {f"{k}_before": v for k, v in before.items()} | after
        out["floor_mean_s"] = (before["floor_s"] + after["floor_s"]) / 2
    return out


def _scored_rows(s: Any) -> Any:
    """The rows the run scored (the landed delta), read back from the warehouse."""
    from ct_assets.store.sql import quote
    from ct_assets.store.warehouse import connect_reader

    names = ", ".join(quote(n) for n in ["_batch_id", "row_id", "event_time", *s.feature_names])
    with connect_reader(s, wait_seconds=30) as con:
        return con.sql(
            f"SELECT {names} FROM raw_deltas WHERE _batch_id = (SELECT max(_batch_id) FROM raw_deltas)"
        ).pl()


def _floor(s: Any, frame: Any) -> dict[str, float]:
    """LightGBM's bare predict on `frame`'s rows, plus inserting the same prediction rows (into a scratch
    table of the predictions table's layout, dropped afterwards)."""
    from ct_assets.common.clock import utc_now
    from ct_assets.core.modeling import model as lgbm
    from ct_assets.store.warehouse import connect_writer

    with connect_writer(s) as con:
        model = lgbm.load_version(s.paths.models, "v0001")
        x = lgbm.encode(frame, model.features)
        keys = frame.select("_batch_id", "row_id", "event_time")
        con.execute("CREATE TABLE predictions_floor AS SELECT * FROM predictions LIMIT 0")
        t0 = time.perf_counter()
        scores = model.booster.predict(x, num_threads=int(model.card.get("num_threads") or 0))
        t1 = time.perf_counter()
        con.register("scored_rows", keys.with_columns(score=scores).to_arrow())
        con.execute(
            "INSERT INTO predictions_floor SELECT _batch_id, row_id, event_time, 'champion', 'v0001', score, "
            "score >= ?, ?, 'floor' FROM scored_rows",
            [s.decision_threshold, utc_now()],
        )
        t2 = time.perf_counter()
        con.execute("DROP TABLE predictions_floor")
    return {
        "floor_predict_s": t1 - t0,
        "floor_write_s": t2 - t1,
        "floor_s": t2 - t0,
        "floor_rows": frame.height,
    }


def bench(work: Path, child: Any, project: Any, history: int, delta: int, repeats: int) -> dict[str, Any]:
    """Build the project once, then `repeats` rounds of the three variants, each on a fresh copy."""
    base = work / "predictions_base"
    env = project(base)
    child("history", base, env, rows=history, batches=max(1, history // 500_000))
    setup = child("predictions_setup", base, env, delta_rows=delta)
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for i in range(repeats):
        for variant in VARIANTS:  # interleaved: the variants share the machine's noise
            root = work / f"predictions_{variant}_{i}"
            shutil.copytree(base, root)
            env_v = dict(
                env, DAGSTER_HOME=str(root / "dagster_home"), CT_ASSETS_CONFIG=str(root / "bench.toml")
            )
            if variant == "champion":
                (root / "bench.toml").write_text((root / "bench.toml").read_text() + SHADOW_OFF)
            runs[variant].append(child("predictions_run", root, env_v, variant=variant))
            shutil.rmtree(root, ignore_errors=True)
    result = summarize(runs)
    result |= {"history_rows": history, "delta_rows": delta, "repeats": repeats, **setup}
    _print(result)
    return result


def _median(runs: list[dict], key: str, sub: str | None = None) -> float:
    return statistics.median(r[key][sub] if sub else r[key] for r in runs)


def summarize(runs: dict[str, list[dict]]) -> dict[str, Any]:
    champ, shadow = runs["champion"], runs["shadow"]
    ratios = [r["steps_s"]["predictions"] / r["floor_mean_s"] for r in champ]
    inside = [sum(r["phases_s"].get(k, 0.0) for k in ("read", "champion scores", "write")) for r in champ]
    return {
        "rows_scored": champ[0]["rows_scored"],
        "shadow_rows_scored": shadow[0]["shadow_rows_scored"],
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
        "step_s": _median(champ, "steps_s", "predictions"),
        "champion_phases_s": statistics.median(inside),
        "floor_s": _median(champ, "floor_mean_s"),
        "floor_before_s": _median(champ, "floor_s_before"),
        "floor_after_s": _median(champ, "floor_s"),
        "floor_predict_s": statistics.median(
            (r["floor_predict_s"] + r["floor_predict_s_before"]) / 2 for r in champ
        ),
        "floor_write_s": statistics.median(
            (r["floor_write_s"] + r["floor_write_s_before"]) / 2 for r in champ
        ),
        "phases_s": {
            k: statistics.median(r["phases_s"].get(k, 0.0) for r in champ) for k in champ[0]["phases_s"]
        },
        "shadow_step_s": _median(shadow, "steps_s", "predictions"),
        "shadow_phases_s": {
            k: statistics.median(r["phases_s"].get(k, 0.0) for r in shadow)
            for k in ("shadow scores", "shadow write", "shadow evaluation")
        },
        "shadow_floor_s": _median(shadow, "floor_mean_s"),
        "run_s": {v: _median(rs, "run_s") for v, rs in runs.items()},
        "raw_deltas_s": {v: _median(rs, "steps_s", "raw_deltas") for v, rs in runs.items()},
        "champion_performance_s": {
            v: _median(rs, "steps_s", "champion_performance") for v, rs in runs.items()
        },
    }


def _print(r: dict[str, Any]) -> None:
    print(
        f"predictions: {r['rows_scored']:,} rows scored in the ingest run: step {r['step_s']:.2f} s vs floor "
        f"{r['floor_s']:.2f} s (predict {r['floor_predict_s']:.2f} + write {r['floor_write_s']:.2f}); paired ratios "
        f"{', '.join(f'{x:.2f}' for x in r['ratios'])} (median {r['ratio_median']:.2f}x)",
        flush=True,
    )
    print(
        f"  shadow: step {r['shadow_step_s']:.2f} s with {r['shadow_rows_scored']:,} shadow rows; phases "
        + ", ".join(f"{k} {v:.2f}" for k, v in r["shadow_phases_s"].items()),
        flush=True,
    )
    print(
        "  ingest run (s): "
        + ", ".join(f"{v} {r['run_s'][v]:.2f} (raw_deltas {r['raw_deltas_s'][v]:.2f})" for v in VARIANTS),
        flush=True,
    )


def lines(r: dict[str, Any]) -> list[str]:
    """The markdown section."""
    phases = ", ".join(f"{k} {v:.2f}" for k, v in r["phases_s"].items())
    shadow_phases = ", ".join(f"{k} {v:.2f}" for k, v in r["shadow_phases_s"].items())
    rows = [
        f"| {v} | {r['run_s'][v]:.2f} | {r['raw_deltas_s'][v]:.2f} | {r['champion_performance_s'][v]:.2f} | "
        + (
            f"{r['step_s']:.2f} |"
            if v == "champion"
            else f"{r['shadow_step_s']:.2f} |"
            if v == "shadow"
            else "- |"
        )
        for v in VARIANTS
    ]
    return [
        "## Predictions in the ingest run",
        "",
        f"A delta of {r['delta_rows']:,} rows ingested into a warehouse of {r['history_rows']:,} rows already "
        f"scored; the champion ({r['trees']} trees, the [training] defaults) scores the {r['rows_scored']:,} new "
        "rows. Medians of "
        f"{r['repeats']} rounds; each round runs the three variants, each on a fresh copy in its own process.",
        "",
        "| ingest run | run s | raw_deltas s | champion_performance s | predictions s |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Champion's scoring: the predictions step {r['step_s']:.2f} s against its floor {r['floor_s']:.2f} s "
        f"(LightGBM's bare predict {r['floor_predict_s']:.2f} s + INSERT of the same rows {r['floor_write_s']:.2f} s; "
        f"the mean of the floors measured in the same process right before the run, {r['floor_before_s']:.2f} s, "
        f"and right after it, {r['floor_after_s']:.2f} s): paired ratios "
        f"{', '.join(f'{x:.2f}' for x in r['ratios'])}, median **{r['ratio_median']:.2f}x** (target at most 1.25x). "
        f"Inside the step (s): {phases}.",
        "",
        f"Shadow scoring, apart: with a blocked challenger shadow-scoring the same {r['shadow_rows_scored']:,} rows "
        f"the step takes {r['shadow_step_s']:.2f} s ({shadow_phases}).",
        "",
    ]
