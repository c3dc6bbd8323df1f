"""Named crash points for the crash tests: with CT_ASSETS_FAILPOINT=<name> in its environment, the
process kills itself (SIGKILL, no cleanup of any kind) when it reaches that point. Unset, a failpoint
costs one dictionary lookup."""

from __future__ import annotations

import os
import signal

ENV = "CT_ASSETS_FAILPOINT"
POINTS = (
    "ingest.before_commit",  # rows appended, transaction not committed
    "ingest.after_commit",  # committed, file still in the landing folder
    "predictions.before_commit",  # the new rows' predictions inserted, transaction not committed
    "train.during",  # LightGBM in the middle of boosting
    "model.during_save",  # model.txt written in the temporary folder, card.json not yet
    "model.after_save",  # model folder complete, not yet in the models table
    "validate.before_ledger",  # report written, ledger and validations not yet
    "promote.before_commit",  # ledger row inserted, transaction not committed
    "promote.after_commit",  # champion changed, Dagster not yet told
)


def armed(name: str) -> bool:
    return os.environ.get(ENV) == name


def hit(name: str) -> None:
    """Die here, now, if this failpoint is armed."""
    if armed(name):
        os.kill(os.getpid(), signal.SIGKILL)
