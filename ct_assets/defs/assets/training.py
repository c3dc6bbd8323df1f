"""Training: a deterministic LightGBM challenger from the training data set."""

import dagster as dg

from ct_assets.common import failpoints
from ct_assets.common.clock import utc_now
from ct_assets.common.stopwatch import Stopwatch
from ct_assets.core import monitoring, registry
from ct_assets.core.datasets.training import DatasetInfo, read_split
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.triggers.snapshot import writer_keeping_snapshot
from ct_assets.defs.budget import seconds_left
from ct_assets.defs.constants import TRAINING
from ct_assets.defs.metadata import table
from ct_assets.defs.resources import SettingsResource
from ct_assets.store.warehouse import connect_writer, file_lock


@dg.asset(group_name=TRAINING, kinds={"lightgbm"}, code_version="1")
def challenger_model(
    context: dg.AssetExecutionContext, settings: SettingsResource, training_dataset: dict
) -> dg.Output:
    """A LightGBM challenger trained on the training split, rows in canonical order, fixed seed and
    threads: the same data and parameters give a byte-identical model. Saved as model.txt plus a
    card.json (params, seed, data hash, code version, features, row counts, training time)."""
    s = settings.load()
    ds = DatasetInfo.from_json(training_dataset)
    # At most one training in flight on this warehouse: a second one waits here (queues) for the first.
    lock = s.paths.warehouse.with_name(s.paths.warehouse.name + ".train.lock")
    with file_lock(lock, s.guardrails.max_run_seconds, "the training lock"):
        run_left = seconds_left(context, s)
        budget = min(s.guardrails.max_training_seconds, run_left)
        source = (
            f"[guardrails] max_training_seconds = {s.guardrails.max_training_seconds:g}"
            if budget == s.guardrails.max_training_seconds
            else f"what was left of [guardrails] max_run_seconds = {s.guardrails.max_run_seconds:g}"
        )
        watch = Stopwatch()
        with connect_writer(s) as con:
            train_rows = read_split(con, s, ds, "train")
        watch.lap("read")
        flag = s.columns.exploration
        weights = lgbm.sample_weights(train_rows, flag, s.dataset.exploration_weight)
        try:
            trained = lgbm.train(train_rows, s, budget_seconds=budget, budget_source=source, weights=weights)
        except lgbm.TrainingBudgetExceeded as e:
            raise dg.Failure(str(e)) from None
        watch.lap("train")
        positives = int(lgbm.labels(train_rows, s).sum())
        profile = monitoring.feature_profile(train_rows, s)
        del train_rows
        watch.lap("feature profile")
    now = utc_now()
    with writer_keeping_snapshot(s) as con:
        version = lgbm.next_version(s.paths.models, registry.model_versions(con))
        folder, card = lgbm.save(
            trained,
            s.paths.models,
            version,
            {
                "data_hash": ds.dataset_hash,
                "train_hash": ds.train_hash,
                "holdout_hash": ds.holdout_hash,
                "golden_hash": ds.golden_hash,
                "label": {"column": s.columns.label, "classes": list(s.columns.label_classes)},
                "profile": profile,
                "exploration_weight": s.dataset.exploration_weight if flag else None,
                "rows": {"train": ds.n_train, "holdout": ds.n_holdout, "train_positives": positives},
                "watermark": {
                    "max_batch_id": ds.max_batch_id,
                    "newest_event_time": ds.newest_event_time.isoformat(),
                },
                "run_id": context.run_id,
            },
        )
        failpoints.hit("model.after_save")
        registry.record_model(
            con,
            registry.ModelRecord(
                version=version,
                created_at=now,
                dataset_hash=ds.dataset_hash,
                code_version=card["code_version"],
                params=trained.params,
                n_train=ds.n_train,
                n_holdout=ds.n_holdout,
                train_seconds=trained.seconds,
                watermark_batch_id=ds.max_batch_id,
                watermark_event_time=ds.newest_event_time,
                model_sha256=card["model_sha256"],
                run_id=context.run_id,
            ),
        )
    watch.lap("save and register")
    gains = trained.booster.feature_importance(importance_type="gain")
    total = float(gains.sum()) or 1.0
    importance = sorted(
        (
            {"feature": n, "gain_share": round(float(g) / total, 4)}
            for n, g in zip(trained.booster.feature_name(), gains, strict=True)
        ),
        key=lambda r: -r["gain_share"],
    )
    context.log.info(f"trained {version} on {ds.n_train} rows in {trained.seconds:.2f} s")
    return dg.Output(
        {"version": version, "path": str(folder), "dataset_hash": ds.dataset_hash},
        data_version=dg.DataVersion(card["model_sha256"][:16]),
        metadata={
            "version": version,
            "model_path": dg.MetadataValue.path(str(folder / lgbm.MODEL_FILE)),
            "card_path": dg.MetadataValue.path(str(folder / lgbm.CARD_FILE)),
            "data_hash": ds.dataset_hash,
            "code_version": card["code_version"],
            "rows_train": ds.n_train,
            "training_seconds": round(trained.seconds, 3),
            "seconds": dg.MetadataValue.json(watch.seconds),
            "num_trees": card["num_trees"],
            "seed": str(trained.params.get("seed")),
            "params": dg.MetadataValue.json(trained.params),
            "feature_importance": table(importance, ["feature", "gain_share"]),
        },
    )
