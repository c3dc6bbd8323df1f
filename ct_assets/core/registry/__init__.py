"""The model registry: trained models, validations, the append-only ledger that names the champion
(`records`), and the actions that change the champion (`actions`: a gated promotion, a person's approval,
a rollback). The ledger's names are re-exported here: `registry.champion(con)`, `registry.record(...)`.
"""

from ct_assets.core.registry.records import (
    CHAMPION_ACTIONS,
    LedgerEntry,
    ModelRecord,
    actor,
    champion,
    champion_stack,
    last_verdict,
    latest_decision,
    latest_validation,
    ledger,
    model,
    model_versions,
    models,
    record,
    record_model,
    record_validation,
    review_queue,
    rollback_target,
)

__all__ = [
    "CHAMPION_ACTIONS",
    "LedgerEntry",
    "ModelRecord",
    "actor",
    "champion",
    "champion_stack",
    "last_verdict",
    "latest_decision",
    "latest_validation",
    "ledger",
    "model",
    "model_versions",
    "models",
    "record",
    "record_model",
    "record_validation",
    "review_queue",
    "rollback_target",
]
