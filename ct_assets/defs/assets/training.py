"""Training: a deterministic LightGBM challenger from the training data set."""

import dagster as dg

from ct_assets.core.datasets.training import DatasetInfo
from ct_assets.core.modeling import model as lgbm
from ct_assets.core.modeling.challenger import (
    champion_if_unchanged,
    train_challenger,
    training_budget,
    training_lock,
)
from ct_assets.defs.budget import seconds_left
from ct_assets.defs.constants import TRAINING
from ct_assets.defs.metadata import table
from ct_assets.defs.resources import SettingsResource


@dg.asset(group_name=TRAINING, kinds={"lightgbm"})
def challenger_model(
    context: dg.AssetExecutionContext, settings: SettingsResource, training_dataset: dict
) -> dg.Output:
    """A LightGBM challenger trained on the training split, rows in canonical order, fixed seed and
    threads: the same data and parameters give a byte-identical model. With `[training] engine = "dask"`
    it trains on the Dask workers instead, reproducible within tolerance only. Saved as model.txt plus a
    card.json (engine, params, seed, data hash, code version, features, row counts, training time)."""
    s = settings.load()
    ds = DatasetInfo.from_json(training_dataset)
    with training_lock(s):
        budget, source = training_budget(s, seconds_left(context, s))
        c = champion_if_unchanged(s, ds)
        try:
            c = c or train_challenger(
                s, ds, run_id=context.run_id, budget_seconds=budget, budget_source=source
            )
        except lgbm.TrainingBudgetExceeded as e:
            raise dg.Failure(str(e)) from None
    context.log.info(
        f"{c.version} is the champion, trained on this very data set: not trained again"
        if c.reused
        else f"trained {c.version} on {ds.n_train} rows in {c.train_seconds:.2f} s"
    )
    return dg.Output(
        {"version": c.version, "path": str(c.folder), "dataset_hash": ds.dataset_hash},
        data_version=dg.DataVersion(c.card["model_sha256"][:16]),
        metadata={
            "version": c.version,
            "model_path": dg.MetadataValue.path(str(c.folder / lgbm.MODEL_FILE)),
            "card_path": dg.MetadataValue.path(str(c.folder / lgbm.CARD_FILE)),
            "data_hash": ds.dataset_hash,
            "code_version": c.card["code_version"],
            "engine": c.card.get("engine", "lightgbm"),
            "rows_train": ds.n_train,
            "training_seconds": round(c.train_seconds, 3),
            "reused_champion": c.reused,
            "seconds": dg.MetadataValue.json(c.seconds),
            "num_trees": c.card["num_trees"],
            "seed": str(c.params.get("seed")),
            "params": dg.MetadataValue.json(c.params),
            "feature_importance": table(c.importance(), ["feature", "gain_share"]),
        },
    )
