"""The promotion gate: the challenger against the champion, overall and per slice, with intervals.

`rule` holds the decision (non-inferiority per comparison, the per-slice confidence), `results` what it
produces, `outcomes` the readable summaries of the blocking checks, `secondary` the secondary metrics,
`stats` DeLong and the paired bootstrap, `evaluation` the evaluation sets of one validation with their
score cache, `report` the HTML page and the markdown summary. The names below are its public face.
"""

from ct_assets.core.gate.results import (
    FLOOR_CHECK,
    GOLDEN,
    SANITY_CHECK,
    SECONDARY_CHECK,
    SLICE_CHECK,
    CheckOutcome,
    Comparison,
    EvalSet,
    GateResult,
    regression_check,
)
from ct_assets.core.gate.rule import evaluate
from ct_assets.core.gate.slices import MIN_SLICE_CONFIDENCE, choose_slice_confidence

__all__ = [
    "FLOOR_CHECK",
    "GOLDEN",
    "MIN_SLICE_CONFIDENCE",
    "SANITY_CHECK",
    "SECONDARY_CHECK",
    "SLICE_CHECK",
    "CheckOutcome",
    "Comparison",
    "EvalSet",
    "GateResult",
    "choose_slice_confidence",
    "evaluate",
    "regression_check",
]
